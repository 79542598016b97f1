package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/internal/testutil"
)

// An interrupted conversion removes its partial output: a streamOptimized
// VMDK arrives on stdin, half of it, and the process gets SIGINT while it
// waits for the rest.
func TestInterruptRemovesPartialOutput(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img")
	dir := t.TempDir()
	bin := filepath.Join(dir, "vmconv")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)

	raw := filepath.Join(dir, "in.raw")
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	require.NoError(t, os.WriteFile(raw, data, 0o644))
	vmdkPath := filepath.Join(dir, "in.vmdk")
	testutil.Run(t, qemuImg, "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, vmdkPath)
	stream, err := os.ReadFile(vmdkPath)
	require.NoError(t, err)

	outDir := filepath.Join(dir, "out")
	require.NoError(t, os.Mkdir(outDir, 0o755))
	cmd := exec.Command(bin, "convert", "-f", "vmdk", "-", filepath.Join(outDir, "out.raw"))
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	_, err = stdin.Write(stream[:len(stream)/2])
	require.NoError(t, err)

	// Wait until the temporary output exists, then interrupt.
	deadline := time.Now().Add(20 * time.Second)
	for {
		entries, _ := os.ReadDir(outDir)
		if len(entries) > 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "no temporary output appeared")
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	err = cmd.Wait()
	stdin.Close()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.NotEqual(t, 0, ee.ExitCode())
	entries, err := os.ReadDir(outDir)
	require.NoError(t, err)
	assert.Empty(t, entries, "partial output left behind")
}
