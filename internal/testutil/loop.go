package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// LoopDevice attaches a file of size bytes, each of them fill, as a loop
// device, detached when the test ends, and returns the device's path and
// the file's.
func LoopDevice(t testing.TB, size int, fill byte) (dev, backing string) {
	t.Helper()
	RequireTool(t, "losetup")
	if os.Geteuid() != 0 {
		Unavailable(t, "loop devices need root")
	}
	backing = filepath.Join(t.TempDir(), "device.img")
	require.NoError(t, os.WriteFile(backing, bytes.Repeat([]byte{fill}, size), 0o644))
	out, err := exec.Command("losetup", "-f", "--show", backing).CombinedOutput()
	if err != nil {
		Unavailable(t, "losetup: "+err.Error()+": "+string(out))
	}
	dev = strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return dev, backing
}
