package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "a.raw")
	require.NoError(t, os.WriteFile(img, make([]byte, 4096), 0o644))
	other := filepath.Join(dir, "b.raw")
	require.NoError(t, os.WriteFile(other, append(make([]byte, 4095), 1), 0o644))
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"success", []string{"info", img}, 0},
		{"missing argument", []string{"convert", img}, 2},
		{"unknown flag", []string{"info", "--frobnicate", img}, 2},
		{"unknown format", []string{"info", "-f", "nosuch", img}, 2},
		{"bad output kind", []string{"info", "--output", "yaml", img}, 2},
		{"missing input", []string{"info", filepath.Join(dir, "none")}, 1},
		{"images differ", []string{"compare", img, other}, 1},
		{"images equal", []string{"compare", img, img}, 0},
		{"inspect ran", []string{"inspect", "--strict", img}, 0},
		{"inspect unknown target", []string{"inspect", "--target", "hyperv", img}, 2},
		{"inspect missing input", []string{"inspect", filepath.Join(dir, "none")}, 1},
		{"convert unknown target", []string{"convert", "--target", "hyperv", img, filepath.Join(dir, "c.raw")}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tc.args, nil, &out, &errOut)
			assert.Equal(t, tc.code, code, "stdout %q stderr %q", out.String(), errOut.String())
			if tc.code == 2 || (tc.code == 1 && tc.name != "images differ") {
				assert.Contains(t, errOut.String(), "vmconv: ")
			}
		})
	}
}
