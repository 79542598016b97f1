package testutil

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// WildGuestDir names the directory build-wild.sh caches into: the same hash
// as the script computes with sha256sum | cut -c1-16.
func TestWildGuestDirMatchesScript(t *testing.T) {
	RequireTool(t, "sha256sum")
	t.Setenv("VMCONV_WILD_GUEST_ROOT", "")
	t.Setenv("XDG_CACHE_HOME", "/cache")
	script := filepath.Join("..", "..", "testdata", "guest", "build-wild.sh")
	out, err := exec.Command("sh", "-c", `sha256sum "$1" | cut -c1-16`, "sh", script).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range WildGuestVariants {
		d, err := WildGuestDir(filepath.Join("..", ".."), v)
		if err != nil {
			t.Fatal(err)
		}
		want := filepath.Join("/cache", "vmconv", "guest-wild", v, strings.TrimSpace(string(out)))
		if d != want {
			t.Errorf("%s: got %s, want %s", v, d, want)
		}
	}
}
