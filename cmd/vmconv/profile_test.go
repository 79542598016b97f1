package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The profiles are written where the environment says, and a path that
// cannot be written is said, not fatal.
func TestProfilingEnvironment(t *testing.T) {
	dir := t.TempDir()
	cpu, tr := filepath.Join(dir, "cpu.prof"), filepath.Join(dir, "trace.out")
	t.Setenv("VMCONV_CPUPROFILE", cpu)
	t.Setenv("VMCONV_TRACE", tr)
	var stderr bytes.Buffer
	stop := startProfiling(&stderr)
	stop()
	assert.Empty(t, stderr.String())
	for _, p := range []string{cpu, tr} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Positive(t, fi.Size(), p)
	}

	t.Setenv("VMCONV_CPUPROFILE", filepath.Join(dir, "missing", "cpu.prof"))
	t.Setenv("VMCONV_TRACE", "")
	stderr.Reset()
	startProfiling(&stderr)()
	assert.Contains(t, stderr.String(), "VMCONV_CPUPROFILE")
}
