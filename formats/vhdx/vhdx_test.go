package vhdx

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/disk/disktest"
	"github.com/vmconv/vmconv/internal/testutil"
)

func TestReadQemuFiles(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	const size = 20<<20 + 3*512
	disktest.WriteSparse(t, src, disktest.Pattern(size, 5))
	for _, o := range []string{"subformat=dynamic", "subformat=fixed", "block_size=1M", "subformat=dynamic,block_size=32M"} {
		t.Run(o, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "q.vhdx")
			disktest.QemuImg(t, "convert", "-O", "vhdx", "-o", o, src, p)
			want := disktest.RawOf(t, p, "vhdx")
			img, err := Open(p)
			require.NoError(t, err)
			defer img.Close()
			require.Equal(t, int64(len(want)), img.Size())
			require.True(t, bytes.Equal(want, disktest.ReadAll(t, img)))
			disktest.RequireExtentsCover(t, img, want)
			probs, err := Check(p)
			require.NoError(t, err)
			assert.Empty(t, probs)
		})
	}
}

func convertTo(t testing.TB, src disk.Image, path string, opt Options) {
	t.Helper()
	out := disk.NewOutput(false)
	defer out.Abort()
	w, err := Create(out, path, src.Size(), opt)
	require.NoError(t, err)
	require.NoError(t, disk.Copy(context.Background(), src, w, disk.CopyOptions{}))
	require.NoError(t, out.Commit())
}

// TestWriteQemuReads: qemu-img check finds our images clean, compares them
// equal to the source both ways and reports the size; libvhdi reads them.
func TestWriteQemuReads(t *testing.T) {
	for _, tc := range []struct {
		size int64
		opt  Options
	}{
		{20<<20 + 3*512, Options{}},
		{7<<20 + 1000, Options{}},
		{40 << 20, Options{BlockSize: 1 << 20}},
		{20 << 20, Options{Subformat: "fixed"}},
		{5 << 20, Options{}},
	} {
		t.Run(strconv.FormatInt(tc.size, 10)+tc.opt.Subformat, func(t *testing.T) {
			dir := t.TempDir()
			want := disktest.Pattern(tc.size, tc.size)
			raw := filepath.Join(dir, "src.raw")
			disktest.WriteSparse(t, raw, want)
			src, err := disk.OpenRaw(raw)
			require.NoError(t, err)
			defer src.Close()
			p := filepath.Join(dir, "out.vhdx")
			convertTo(t, src, p, tc.opt)
			assert.Contains(t, disktest.QemuImg(t, "check", p), "No errors were found")
			disktest.QemuImg(t, "compare", "-f", "vhdx", "-F", "raw", p, raw)
			disktest.QemuImg(t, "compare", "-f", "raw", "-F", "vhdx", raw, p)
			var info struct {
				VirtualSize int64 `json:"virtual-size"`
			}
			require.NoError(t, json.Unmarshal([]byte(disktest.QemuImg(t, "info", "--output", "json", p)), &info))
			assert.Equal(t, (tc.size+511)&^511, info.VirtualSize)
			img, err := Open(p)
			require.NoError(t, err)
			defer img.Close()
			got := disktest.ReadAll(t, img)
			require.True(t, bytes.Equal(want, got[:tc.size]))
			probs, err := Check(p)
			require.NoError(t, err)
			assert.Empty(t, probs)
			vi := testutil.Run(t, testutil.RequireTool(t, "vhdiinfo"), p)
			assert.Contains(t, vi, "VHDX")
			assert.Contains(t, vi, "("+strconv.FormatInt(info.VirtualSize, 10)+" bytes)")
		})
	}
}

// smallImage is our own writer's output for a 3 MiB disk with 1 MiB blocks.
func smallImage(t testing.TB) []byte {
	p := filepath.Join(t.TempDir(), "s.vhdx")
	want := disktest.Pattern(3<<20, 1)
	convertTo(t, disk.FromReaderAt(bytes.NewReader(want), int64(len(want))), p, Options{BlockSize: 1 << 20})
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}

func TestCorruptInput(t *testing.T) {
	orig := smallImage(t)
	le := binary.LittleEndian
	reseal := func(b []byte, off, n int) { seal(b[off : off+n]) }
	tests := []struct {
		name   string
		mutate func(b []byte) []byte
		want   string
	}{
		{"too short", func(b []byte) []byte { return b[:1000] }, "too short"},
		{"no identifier", func(b []byte) []byte { copy(b, "vhdxfilX"); return b }, "file identifier"},
		{"both headers bad", func(b []byte) []byte { b[headerOff1+20]++; b[headerOff2+20]++; return b }, "no valid header"},
		{"dirty log", func(b []byte) []byte {
			for _, o := range []int{headerOff1, headerOff2} {
				b[o+48] = 1
				reseal(b, o, headerLen)
			}
			return b
		}, "log is not empty"},
		{"both region tables bad", func(b []byte) []byte { b[regionOff1+100]++; b[regionOff2+100]++; return b }, "no valid region table"},
		{"BAT region past end", func(b []byte) []byte {
			for _, o := range []int{regionOff1, regionOff2} {
				le.PutUint64(b[o+16+16:], 1<<40)
				reseal(b, o, regionLen)
			}
			return b
		}, "past the end of the file"},
		{"block size 3 MiB", func(b []byte) []byte { le.PutUint32(b[metaOff+64*kib:], 3<<20); return b }, "block size 3145728"},
		{"required unknown metadata", func(b []byte) []byte { b[metaOff+32] ^= 0xFF; return b }, "unknown required metadata item"},
		{"metadata item listed twice", func(b []byte) []byte { copy(b[metaOff+64:metaOff+96], b[metaOff+32:]); return b }, "listed twice"},
		{"differencing: has-parent flag", func(b []byte) []byte { le.PutUint32(b[metaOff+64*kib+4:], 2); return b }, "differencing VHDX"},
		{"differencing: parent locator item", func(b []byte) []byte { copy(b[metaOff+32:], itemParentLoc[:]); return b }, "differencing VHDX"},
		{"BAT entry past end", func(b []byte) []byte { le.PutUint64(b[batOff:], payloadFull|1<<40); return b }, "BAT entry 0 at 0x300000"},
		{"BAT state 5", func(b []byte) []byte { b[batOff] = 5; return b }, "state 5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.vhdx")
			require.NoError(t, os.WriteFile(p, tc.mutate(append([]byte(nil), orig...)), 0o644))
			_, err := Open(p)
			require.Error(t, err)
			require.ErrorContains(t, err, p)
			require.ErrorContains(t, err, tc.want)
			if tc.name == "dirty log" {
				require.True(t, errors.Is(err, ErrDirtyLog))
			}
		})
	}
}

func TestParseOptions(t *testing.T) {
	o, err := ParseOptions(map[string]string{"subformat": "fixed", "block_size": "32M"})
	require.NoError(t, err)
	assert.Equal(t, Options{Subformat: "fixed", BlockSize: 32 << 20}, o)
	for _, kv := range []map[string]string{{"subformat": "diff"}, {"block_size": "3M"}, {"log_size": "8M"}, {"frob": "1"}} {
		_, err := ParseOptions(kv)
		assert.Error(t, err)
	}
}
