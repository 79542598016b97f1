package cpio

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/internal/testutil"
)

// TestGNUCpioExtracts has GNU cpio list and extract what the writer made:
// names, types, permissions and contents, across members whose sizes need
// every amount of padding.
func TestGNUCpioExtracts(t *testing.T) {
	gnu := testutil.RequireTool(t, "cpio")
	var buf bytes.Buffer
	w := NewWriter(&buf)
	require.NoError(t, w.Dir("etc", 0o755))
	files := map[string]string{}
	for n := range 5 {
		name := "etc/f" + strings.Repeat("x", n)
		files[name] = strings.Repeat("d", 3+n)
		require.NoError(t, w.File(name, 0o640, []byte(files[name])))
	}
	require.NoError(t, w.File("init", 0o755, []byte("#!/bin/sh\n")))
	require.NoError(t, w.Symlink("bin", "usr/bin"))
	require.NoError(t, w.CharDevice("console", 0o600, 5, 1))
	require.NoError(t, w.Close())

	list := exec.Command(gnu, "-itv")
	list.Stdin = bytes.NewReader(buf.Bytes())
	out, err := list.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Regexp(t, `(?m)^crw------- .* 5,\s+1 .* console$`, string(out))
	assert.Regexp(t, `(?m)^lrwxrwxrwx .* bin -> usr/bin$`, string(out))
	assert.Regexp(t, `(?m)^drwxr-xr-x .* etc$`, string(out))
	assert.Regexp(t, `(?m)^-rwxr-xr-x .* init$`, string(out))

	dir := t.TempDir()
	extract := exec.Command(gnu, "-id", "--no-absolute-filenames")
	extract.Dir = dir
	extract.Stdin = bytes.NewReader(buf.Bytes())
	out, err = extract.CombinedOutput()
	require.NoError(t, err, "%s", out)
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, want, string(got), name)
		fi, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm(), name)
	}
	target, err := os.Readlink(filepath.Join(dir, "bin"))
	require.NoError(t, err)
	assert.Equal(t, "usr/bin", target)
}

func TestWriterErrors(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	require.NoError(t, w.Close())
	assert.Error(t, w.File("late", 0o644, nil), "no member after the trailer")
	assert.Error(t, NewWriter(failing{}).File("x", 0o644, []byte("x")), "a write error is returned")
}

type failing struct{}

func (failing) Write([]byte) (int, error) { return 0, os.ErrClosed }
