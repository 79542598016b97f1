package fix

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/boot/initramfs"
	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
	"github.com/vmconv/vmconv/vmm/verdict"
)

// brokenDisk opens the disk of testdata/guest/build-wild.sh's "broken"
// guest, or skips.
func brokenDisk(t *testing.T) disk.Image {
	t.Helper()
	dir, err := testutil.WildGuestDir("..", "broken")
	if err != nil {
		t.Skip("the broken guest's cache is unknown: ", err)
	}
	img, err := disk.OpenRaw(filepath.Join(dir, "disk.raw"))
	if err != nil {
		testutil.Unavailable(t, "the broken guest is not built (testdata/guest/build-wild.sh broken)")
	}
	t.Cleanup(func() { img.Close() })
	return img
}

// fakeBoot answers a fixer boot with a console, as an engine would.
func fakeBoot(t *testing.T, result verdict.Result, console func(p *Plan) string, seen *BootRequest) Booter {
	return func(ctx context.Context, req BootRequest) (*verdict.Report, error) {
		*seen = req
		im, err := initramfs.Read(req.Initrd, initramfs.DefaultLimits)
		require.NoError(t, err)
		pj, err := im.ReadFile(PlanFile, 1<<20)
		require.NoError(t, err)
		var p Plan
		require.NoError(t, json.Unmarshal(pj, &p))
		io.WriteString(req.Console, console(&p))
		rep := &verdict.Report{BootMS: 1234}
		rep.Apply(result)
		return rep, nil
	}
}

func allOK(p *Plan) string {
	s := "[    0.000000] Linux version 6.1.0\n" + Begin + "\n"
	for _, st := range p.Steps {
		s += string(FormatResult(Result{Step: st.Kind, OK: true}))
	}
	return s + End + "\n"
}

func TestRun(t *testing.T) {
	img := brokenDisk(t)
	pass := verdict.Result{Pass: true, Reason: "expected marker seen"}
	t.Run("every step reports ok: the overlays are kept", func(t *testing.T) {
		var req BootRequest
		var con bytes.Buffer
		out, err := Run(context.Background(), Config{Disks: []disk.Image{img}, MACs: []string{"00:50:56:3f:a2:23"},
			Boot: fakeBoot(t, pass, allOK, &req), Console: &con})
		require.NoError(t, err)
		defer out.Close()
		assert.Len(t, out.Overlays, 1)
		assert.Len(t, out.Results, 4)
		assert.Equal(t, int64(1234), out.BootMS)
		assert.Contains(t, con.String(), End)
		// The fixer boots the guest's kernel with its modules, the disks
		// writable, at least 1 GiB.
		assert.Contains(t, req.Cmdline, "rdinit=/init")
		assert.Contains(t, req.Cmdline, "console=ttyS0")
		assert.GreaterOrEqual(t, req.MemoryMiB, int64(1024))
		require.Len(t, req.Disks, 1)
		_, writable := req.Disks[0].(io.WriterAt)
		assert.True(t, writable)
		im, err := initramfs.Read(req.Initrd, initramfs.DefaultLimits)
		require.NoError(t, err)
		var mods []string
		for _, e := range im.Entries {
			if strings.HasPrefix(e.Name, strings.TrimPrefix(ModuleDir, "/")+"/") {
				mods = append(mods, e.Name[len(ModuleDir):])
			}
		}
		joined := strings.Join(mods, " ")
		for _, m := range []string{"virtio_blk", "ext4", "crc32c_generic"} {
			assert.Contains(t, joined, m)
		}
		assert.True(t, strings.HasPrefix(mods[0], "00-crc32c"), "crc32c first: %v", mods)
	})
	t.Run("a failed step fails the run and keeps nothing", func(t *testing.T) {
		var req BootRequest
		out, err := Run(context.Background(), Config{Disks: []disk.Image{img}, Boot: fakeBoot(t, pass, func(p *Plan) string {
			return Begin + "\n" + string(FormatResult(Result{Step: StepInitramfs, Message: "update-initramfs: exit status 1", Output: "E: mkinitramfs failure"})) + End + "\n"
		}, &req)})
		var se *StepError
		require.ErrorAs(t, err, &se)
		assert.Contains(t, err.Error(), "initramfs: update-initramfs: exit status 1")
		assert.Nil(t, out.Overlays)
	})
	t.Run("a fixer that dies is named", func(t *testing.T) {
		var req BootRequest
		out, err := Run(context.Background(), Config{Disks: []disk.Image{img}, Boot: fakeBoot(t,
			verdict.Result{Reason: "kernel panic", Marker: "Kernel panic - not syncing: Attempted to kill init!"},
			func(*Plan) string { return Begin + "\n" }, &req)})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "the fixer did not finish: kernel panic")
		assert.Nil(t, out.Overlays)
	})
	t.Run("fewer results than steps", func(t *testing.T) {
		var req BootRequest
		_, err := Run(context.Background(), Config{Disks: []disk.Image{img}, Boot: fakeBoot(t, pass, func(*Plan) string {
			return Begin + "\n" + End + "\n"
		}, &req)})
		assert.ErrorContains(t, err, "0 of 3 steps reported")
	})
	t.Run("the input is only read", func(t *testing.T) {
		before, err := disk.Digest(context.Background(), img, disk.CopyOptions{})
		require.NoError(t, err)
		var req BootRequest
		out, err := Run(context.Background(), Config{Disks: []disk.Image{img}, Boot: func(ctx context.Context, r BootRequest) (*verdict.Report, error) {
			// The guest writes through the overlay.
			_, err := r.Disks[0].(io.WriterAt).WriteAt(bytes.Repeat([]byte{0xAB}, 4096), 1<<20)
			require.NoError(t, err)
			return fakeBoot(t, pass, allOK, &req)(ctx, r)
		}})
		require.NoError(t, err)
		defer out.Close()
		after, err := disk.Digest(context.Background(), img, disk.CopyOptions{})
		require.NoError(t, err)
		assert.Equal(t, before, after)
		fixed, err := disk.Digest(context.Background(), out.Overlays[0], disk.CopyOptions{})
		require.NoError(t, err)
		assert.NotEqual(t, before, fixed)
	})
}
