package disk

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// randomOutput returns size random bytes and an output file for them.
func randomOutput(t *testing.T, size int) (want []byte, target string, out *Output, f *os.File) {
	t.Helper()
	want = make([]byte, size)
	_, err := rand.Read(want)
	require.NoError(t, err)
	target = filepath.Join(t.TempDir(), "out.raw")
	out = NewOutput(false)
	f, err = out.Create(target)
	require.NoError(t, err)
	return want, target, out, f
}

// Background writeback only starts writes early: the committed file holds
// exactly the bytes written, including those rewritten after writeback ran.
func TestWritebackKeepsBytes(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		rewrite bool // overwrite the start after writeback has seen it
	}{
		{"small, under the lag", 64 << 10, false},
		{"larger than the lag", 8 << 20, false},
		{"start rewritten after writeback", 8 << 20, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, target, out, f := randomOutput(t, tc.size)
			for off := 0; off < len(want); off += 1 << 20 {
				_, err := f.WriteAt(want[off:min(len(want), off+1<<20)], int64(off))
				require.NoError(t, err)
			}
			time.Sleep(3 * writebackEvery)
			if tc.rewrite {
				copy(want[:4096], want[len(want)-4096:])
				_, err := f.WriteAt(want[:4096], 0)
				require.NoError(t, err)
			}
			require.NoError(t, out.Commit())
			got, err := os.ReadFile(target)
			require.NoError(t, err)
			assert.Equal(t, want, got)
		})
	}
}

// Writeback flushes the disk's cache on the way; a flush that fails fails the
// commit (the final fsync of the same file would no longer see the error),
// and the target is not created.
func TestWritebackFlushes(t *testing.T) {
	tests := []struct {
		name    string
		flush   error
		wantErr string
	}{
		{"flushes while writing", nil, ""},
		{"a failed flush fails the commit", unix.EIO, "flush at "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			oldEvery, oldFlush := flushEvery, flushFile
			t.Cleanup(func() { flushEvery, flushFile = oldEvery, oldFlush })
			var flushes atomic.Int32
			flushEvery = 1 << 20
			flushFile = func(fd int) error {
				flushes.Add(1)
				if tc.flush != nil {
					return tc.flush
				}
				return unix.Fdatasync(fd)
			}
			want, target, out, f := randomOutput(t, 8<<20)
			_, err := f.WriteAt(want, 0)
			require.NoError(t, err)
			time.Sleep(3 * writebackEvery)

			err = out.Commit()
			assert.Positive(t, flushes.Load(), "flushed before the commit")
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.ErrorIs(t, err, unix.EIO)
				assert.NoFileExists(t, target)
				return
			}
			require.NoError(t, err)
			got, err := os.ReadFile(target)
			require.NoError(t, err)
			assert.Equal(t, want, got)
		})
	}
}
