package testutil

import (
	"testing"

	"github.com/vmconv/vmconv/disk"
)

// WalkWindow checks the extent map of img over [start, start+window) as a
// fuzz target needs it checked: contiguous, non-empty extents ending at the
// window's end (or the image's), the first few data extents read. It
// returns the Extents error, if any, for the caller to judge.
func WalkWindow(t testing.TB, img disk.Image, start, window int64) error {
	t.Helper()
	ext, err := img.Extents(start, window)
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	pos, reads := start, 0
	for _, e := range ext {
		if e.Offset != pos || e.Length <= 0 {
			t.Fatalf("extents not contiguous at %#x: %+v", pos, e)
		}
		pos = e.End()
		if e.Kind == disk.Data && reads < 8 {
			reads++
			img.ReadAt(buf[:min(e.Length, int64(len(buf)))], e.Offset)
		}
	}
	if end := min(img.Size(), start+window); pos != end {
		t.Fatalf("extents end at %#x, want %#x", pos, end)
	}
	return nil
}
