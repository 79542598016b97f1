package formats

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/internal/testutil"
)

// Images of formats vmconv has no reader for are refused by name instead of
// being copied as raw disks: made by qemu-img where it writes the format,
// else with the magic qemu's drivers probe for.
func TestDetectRefusesForeignFormats(t *testing.T) {
	testutil.RequireTool(t, "qemu-img")
	dir := t.TempDir()
	made := []struct{ format, opts, want string }{
		{"qcow", "", `a qcow \(version 1\) image \(qemu-img format "qcow"\)`},
		{"qed", "", `a QED image`},
		{"parallels", "", `a Parallels image`},
		{"vdi", "", `a VirtualBox VDI image`},
		{"luks", "key-secret=sec0,iter-time=10", `a LUKS-encrypted image`},
	}
	for _, tc := range made {
		t.Run(tc.format, func(t *testing.T) {
			p := filepath.Join(dir, "disk."+tc.format)
			args := []string{"create", "-q", "-f", tc.format, "--object", "secret,id=sec0,data=pw"}
			if tc.opts != "" {
				args = append(args, "-o", tc.opts)
			}
			// qemu-img times its LUKS key derivation by the thread's CPU
			// time, and fails when a tick-based clock measures none
			// ("Unable to get accurate CPU usage", about one run in ten
			// here): try again.
			for try := 1; ; try++ {
				out, err := exec.Command("qemu-img", append(args, p, "4M")...).CombinedOutput()
				if err == nil {
					break
				}
				if try == 5 || !strings.Contains(string(out), "Unable to get accurate CPU usage") {
					t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
				}
			}
			f, err := Detect(p)
			if reader, lerr := Lookup(tc.format); lerr == nil && reader.OpenImage != nil {
				require.NoError(t, err, "vmconv reads %s", tc.format)
				assert.Equal(t, tc.format, f.Name)
				return
			}
			require.Error(t, err)
			assert.Regexp(t, "^"+p+": "+tc.want+`.*which vmconv does not read`, err.Error())
		})
	}
	handMade := []struct {
		name       string
		head, tail string
		want       string
	}{
		{"bochs", "Bochs Virtual HD Image\x00", "", "a Bochs image"},
		{"cloop", "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n", "", "a cloop image"},
		{"dmg", "", "koly\x00\x00\x00\x04", "an Apple disk image"},
	}
	for _, tc := range handMade {
		t.Run(tc.name, func(t *testing.T) {
			b := make([]byte, 64<<10)
			copy(b, tc.head)
			copy(b[len(b)-tailSize:], tc.tail)
			p := filepath.Join(dir, "disk."+tc.name)
			require.NoError(t, os.WriteFile(p, b, 0o644))
			_, err := Detect(p)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			if tc.head != "" { // a pipe has only its start to go by
				_, err = DetectHead("-", b[:headSize])
				assert.ErrorContains(t, err, tc.want)
			}
		})
	}
	// The same bytes past the start, or a DMG trailer not at the end, are
	// only data of a raw disk.
	b := make([]byte, 64<<10)
	copy(b[512:], "QED\x00")
	copy(b[len(b)-2*tailSize:], "koly")
	p := filepath.Join(dir, "plain.img")
	require.NoError(t, os.WriteFile(p, b, 0o644))
	f, err := Detect(p)
	require.NoError(t, err)
	assert.Equal(t, "raw", f.Name)
}
