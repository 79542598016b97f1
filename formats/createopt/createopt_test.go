package createopt

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBool(t *testing.T) {
	for _, v := range []string{"on", "ON", "yes", "true", "True", "y", "1"} {
		b, err := Bool(v)
		require.NoError(t, err, v)
		assert.True(t, b, v)
	}
	for _, v := range []string{"off", "Off", "no", "false", "n", "0"} {
		b, err := Bool(v)
		require.NoError(t, err, v)
		assert.False(t, b, v)
	}
	for _, v := range []string{"", "2", "onn", "enable"} {
		_, err := Bool(v)
		assert.Error(t, err, v)
	}
}

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"65536", 65536},
		{"512b", 512},
		{"64k", 64 << 10},
		{"64K", 64 << 10},
		{"2M", 2 << 20},
		{"0.5M", 512 << 10},
		{"1.5k", 1536},
		{"1G", 1 << 30},
		{"3t", 3 << 40},
		{"1P", 1 << 50},
		{"7E", 7 << 60},
		{"9223372036854775807", 1<<63 - 1},
	} {
		got, err := Size(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
	for _, in := range []string{
		"", "k", "-1", "+4k", "1.5", "0.1k", // 102.4 bytes
		"8E", "9223372036854775808", "1e3", "0x10", "64 k", "64KiB", "1..5M", "1_000",
	} {
		_, err := Size(in)
		assert.Error(t, err, in)
	}
}

func TestKeys(t *testing.T) {
	assert.Equal(t, []string{"a", "b", "c"}, Keys(map[string]string{"c": "", "a": "", "b": ""}))
	assert.Empty(t, Keys(nil))
}

// FuzzSize: any text gives a size or an error, never a panic, a negative
// size or a wrapped one; a plain number reads as itself.
func FuzzSize(f *testing.F) {
	for _, s := range []string{"64k", "0.5M", "2G", "9223372036854775807", "7E", "8E", "1.1b", ".5k", "1e", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Size(s)
		if err != nil {
			return
		}
		require.GreaterOrEqual(t, n, int64(0))
		if plain, perr := strconv.ParseInt(s, 10, 64); perr == nil {
			require.Equal(t, plain, n)
		}
		if k, kerr := Size(s + "k"); kerr == nil {
			require.Equal(t, n*1024, k, "%q×1024", s)
		}
	})
}
