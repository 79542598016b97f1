package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk/disktest"
)

// `info --output json` of an image uses qemu-img's field names where the two
// overlap, so a script written for `qemu-img info --output json` reads it:
// on images qemu-img wrote, every field both print has the same value, and
// qemu-img's top-level fields are all there (format-specific details and
// children aside, which each tool gives its own way), overlays' backing
// fields included.
func TestImageInfoJSONMatchesQemuImg(t *testing.T) {
	dir := t.TempDir()
	qemuImg := func(args ...string) string { return disktest.QemuImg(t, args...) }
	// 5 MiB + 1536 bytes: data in its first and third MiB and its last
	// sector, zeros (holes) elsewhere.
	raw := make([]byte, 5<<20+1536)
	for _, off := range []int{0, 2 << 20, len(raw) - 512} {
		_, _ = rand.Read(raw[off : off+512])
	}
	src := filepath.Join(dir, "src.raw")
	require.NoError(t, os.WriteFile(src, raw, 0o644))
	tests := []struct {
		name, format string
		opts         []string
		dirty        bool
		overlay      bool // img is an overlay (qemu-img create -b, a relative name) over src in format
	}{
		{"qcow2", "qcow2", nil, false, false},
		{"qcow2 dirty", "qcow2", []string{"-o", "lazy_refcounts=on"}, true, false},
		{"vmdk", "vmdk", []string{"-o", "subformat=monolithicSparse"}, false, false},
		{"vmdk stream", "vmdk", []string{"-o", "subformat=streamOptimized"}, false, false},
		{"vpc", "vpc", nil, false, false},
		{"vhdx", "vhdx", nil, false, false},
		{"vdi", "vdi", nil, false, false},
		{"raw", "raw", nil, false, false},
		{"qcow2 overlay", "qcow2", nil, false, true},
		{"vmdk snapshot", "vmdk", nil, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(dir, tc.name+".img")
			args := append([]string{"convert", "-f", "raw", "-O", tc.format}, tc.opts...)
			if tc.overlay {
				base := tc.name + "-base.img"
				qemuImg(append(args, src, filepath.Join(dir, base))...)
				qemuImg("create", "-f", tc.format, "-b", base, "-F", tc.format, img)
			} else {
				qemuImg(append(args, src, img)...)
			}
			if tc.dirty {
				// Bit 0 of the incompatible features: what a qemu that died
				// with lazy refcounts leaves behind.
				b, err := os.ReadFile(img)
				require.NoError(t, err)
				b[79] |= 1
				require.NoError(t, os.WriteFile(img, b, 0o644))
			}
			var theirs, ours map[string]any
			require.NoError(t, json.Unmarshal([]byte(qemuImg("info", "--output=json", "-f", tc.format, img)), &theirs))
			var stdout, stderr bytes.Buffer
			require.Equal(t, 0, run([]string{"info", "--output", "json", "-f", tc.format, img}, nil, &stdout, &stderr), stderr.String())
			require.NoError(t, json.Unmarshal(stdout.Bytes(), &ours))
			assert.Equal(t, tc.dirty, ours["dirty-flag"])
			for k, v := range theirs {
				if k == "format-specific" || k == "children" {
					continue
				}
				if assert.Contains(t, ours, k, "qemu-img's field %q", k) {
					assert.Equal(t, v, ours[k], "field %q", k)
				}
			}
		})
	}
}
