package guest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSlice(t *testing.T) {
	m, err := Map([]Layout{{GPA: 0, Size: 1 << 20}, {GPA: 1 << 32, Size: 1 << 16}})
	require.NoError(t, err)
	defer m.Close()
	assert.Equal(t, uint64(1<<20+1<<16), m.Size())
	tests := []struct {
		name string
		gpa  uint64
		n    uint64
		ok   bool
	}{
		{"start", 0, 16, true},
		{"end of first", 1<<20 - 4, 4, true},
		{"across end", 1<<20 - 4, 8, false},
		{"gap", 1 << 21, 1, false},
		{"second region", 1<<32 + 8, 8, true},
		{"huge length wraps", 8, ^uint64(0) - 4, false},
		{"address wrap", ^uint64(0), 2, false},
		{"past all", 1<<32 + 1<<16, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := m.Slice(tc.gpa, tc.n)
			if !tc.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Len(t, b, int(tc.n))
			assert.Equal(t, int(tc.n), cap(b), "capacity is cut so append cannot reach beyond")
		})
	}
	require.NoError(t, m.PutUint64(1<<32, 0x1122334455667788))
	v, err := m.Uint32(1<<32 + 4)
	require.NoError(t, err)
	assert.Equal(t, uint32(0x11223344), v)
}
