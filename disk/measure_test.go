package disk

import (
	"bytes"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func extents(es ...Extent) func(func(Extent) bool) {
	return func(yield func(Extent) bool) {
		for _, e := range es {
			if !yield(e) {
				return
			}
		}
	}
}

func TestBlocks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		data  []Extent
		block int64
		want  []int64
	}{
		{"none", nil, 4096, nil},
		{"one inside a block", []Extent{{Offset: 10, Length: 5}}, 4096, []int64{0}},
		{"across an edge", []Extent{{Offset: 4000, Length: 200}}, 4096, []int64{0, 1}},
		{"two in one block counted once", []Extent{{Offset: 0, Length: 10}, {Offset: 100, Length: 10}}, 4096, []int64{0}},
		{"split at a window edge", []Extent{{Offset: 0, Length: 8192}, {Offset: 8192, Length: 4096}}, 4096, []int64{0, 1, 2}},
		{"empty extents skipped", []Extent{{Offset: 4096, Length: 0}, {Offset: 3 * 4096, Length: 1}}, 4096, []int64{3}},
		{"large blocks", []Extent{{Offset: 1 << 20, Length: 5 << 20}}, 2 << 20, []int64{0, 1, 2}},
		{"runs apart", []Extent{{Offset: 0, Length: 1}, {Offset: 2 * 4096, Length: 4096}, {Offset: 3 * 4096, Length: 10}}, 4096, []int64{0, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []int64 // the runs' blocks, one by one
			var prevEnd int64 = -1
			for r := range BlockRuns(extents(tc.data...), tc.block) {
				require.Positive(t, r.Count)
				require.Greater(t, r.First, prevEnd, "runs in order, apart")
				for b := r.First; b < r.First+r.Count; b++ {
					got = append(got, b)
				}
				prevEnd = r.First + r.Count
			}
			assert.Equal(t, tc.want, got)
			assert.Equal(t, int64(len(tc.want)), CountBlocks(extents(tc.data...), tc.block))
		})
	}
	assert.Equal(t, int64(3), CountBlocks(AllData(2*4096+1), 4096))
	assert.Equal(t, []BlockRun{{0, 1 << 30}}, slices.Collect(BlockRuns(AllData(64<<40), 64<<10)))
	assert.Zero(t, CountBlocks(AllData(0), 4096))
}

// NonZero leaves out the 4 KiB blocks of zeros inside data extents and
// merges what is left into runs.
func TestNonZero(t *testing.T) {
	b := make([]byte, 3<<20+100)
	b[5] = 1              // block 0
	b[4096*3+7] = 1       // block 3
	b[4096*4] = 1         // block 4: merges with 3
	b[2<<20+4096*2+1] = 1 // past a 1 MiB read
	b[len(b)-1] = 1       // the short last block
	img := FromReaderAt(bytes.NewReader(b), int64(len(b)))
	var errRead, errExt error
	got := slices.Collect(NonZero(img, DataExtents(img, &errExt), &errRead))
	require.NoError(t, errRead)
	require.NoError(t, errExt)
	want := []Extent{
		{Offset: 0, Length: 4096, Kind: Data},
		{Offset: 3 * 4096, Length: 2 * 4096, Kind: Data},
		{Offset: 2<<20 + 2*4096, Length: 4096, Kind: Data},
		{Offset: 3 << 20, Length: 100, Kind: Data},
	}
	assert.Equal(t, want, got)
}
