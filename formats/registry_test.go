package formats

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/createopt"
	"github.com/vmconv/vmconv/formats/vhd"
	"github.com/vmconv/vmconv/internal/testutil"
)

func tarWith(t *testing.T, name string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 3, Typeflag: tar.TypeReg}))
	tw.Write([]byte("<x>"))
	require.NoError(t, tw.Close())
	return b.Bytes()
}

func TestDetect(t *testing.T) {
	dir := t.TempDir()
	sparse := append([]byte("KDMV\x01\x00\x00\x00"), make([]byte, 504)...)
	tests := []struct {
		name    string
		file    string
		content []byte
		want    string
	}{
		{"sparse VMDK by magic, whatever the name", "disk.img", sparse, "vmdk"},
		{"VMDK descriptor", "d.vmdk", []byte("# Disk DescriptorFile\nversion=1\nCID=fffffffe\n"), "vmdk"},
		{"XVA by its first tar member", "export.bin", tarWith(t, "ova.xml"), "xva"},
		{"a tar that is not an XVA", "other.tar", tarWith(t, "hello.txt"), "raw"},
		{"VMX text", "vm.vmx", []byte(".encoding = \"UTF-8\"\nconfig.version = \"8\"\nvirtualHW.version = \"14\"\n"), "vmx"},
		{"bundle tar by its long extension", "b.vmb.tar", tarWith(t, "chunks/00/x"), "vmb"},
		{"no magic, raw extension", "disk.raw", make([]byte, 4096), "raw"},
		{"no magic, unknown extension", "disk.xyz", []byte("random bytes"), "raw"},
		{"compressed XVA by extension", "vm.xva", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0}, "xva"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.file)
			require.NoError(t, os.WriteFile(p, tc.content, 0o644))
			f, err := Detect(p)
			require.NoError(t, err)
			assert.Equal(t, tc.want, f.Name)
		})
	}

	bundle := filepath.Join(dir, "vm.vmb")
	require.NoError(t, os.Mkdir(bundle, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(bundle, "vm.json"), []byte("{}"), 0o644))
	f, err := Detect(bundle)
	require.NoError(t, err)
	assert.Equal(t, "vmb", f.Name)

	_, err = Detect(dir)
	assert.ErrorContains(t, err, "not a VM bundle")
	_, err = Detect(filepath.Join(dir, "missing"))
	assert.Error(t, err)
}

func TestLookupAndExtensions(t *testing.T) {
	for _, name := range []string{"raw", "vmdk", "xva", "vmx", "vmb", "VMDK"} {
		_, err := Lookup(name)
		assert.NoError(t, err, name)
	}
	_, err := Lookup("qcow9")
	assert.ErrorContains(t, err, "known: raw")
	assert.Equal(t, "vmb", ByExtension("x/a.VMB.tar").Name)
	assert.Equal(t, "xva", ByExtension("a.xva").Name)
	assert.Nil(t, ByExtension("a.tar"))
	vmx, _ := Lookup("vmx")
	assert.Equal(t, "vmdk", vmx.DiskFormatName())
	raw, _ := Lookup("raw")
	assert.Equal(t, "raw", raw.DiskFormatName())
}

// TestDetectFixedVHD: a fixed VHD is raw data and a footer, with no
// signature at its start; it is found by its footer whatever its name,
// and a footer that does not hold (checksum, size) leaves the file raw.
func TestDetectFixedVHD(t *testing.T) {
	testutil.RequireTool(t, "qemu-img")
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	require.NoError(t, os.WriteFile(src, bytes.Repeat([]byte("fixed vhd "), 10000), 0o644))
	made := filepath.Join(dir, "made.vhd")
	testutil.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed", src, made)
	good, err := os.ReadFile(made)
	require.NoError(t, err)
	end := len(good) - 512
	tests := []struct {
		name   string
		file   string
		mutate func(b []byte) []byte
		want   string
	}{
		{"no extension", "disk", nil, "vpc"},
		{"a raw extension", "disk.img", nil, "vpc"},
		{"footer checksum wrong", "disk", func(b []byte) []byte { b[end+70]++; return b }, "raw"},
		{"footer size larger than the file", "disk", func(b []byte) []byte {
			b = b[end-4096:] // the footer says more than the file holds now
			return b
		}, "raw"},
		{"shorter than a footer", "disk", func(b []byte) []byte { return b[end+1:] }, "raw"},
		{"damaged, but named .vhd", "disk.vhd", func(b []byte) []byte { b[end+70]++; return b }, "vpc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			if tc.mutate != nil {
				b = tc.mutate(b)
			}
			p := filepath.Join(t.TempDir(), tc.file)
			require.NoError(t, os.WriteFile(p, b, 0o644))
			f, err := Detect(p)
			require.NoError(t, err)
			assert.Equal(t, tc.want, f.Name)
		})
	}
	// Found by its footer, it opens as the VHD it is.
	p := filepath.Join(dir, "noext")
	require.NoError(t, os.Rename(made, p))
	f, err := Detect(p)
	require.NoError(t, err)
	img, err := f.OpenImage(p)
	require.NoError(t, err)
	defer img.Close()
	assert.Equal(t, "fixed", img.(*vhd.Image).Info().Subformat)
	buf := make([]byte, 10)
	_, err = img.ReadAt(buf, 10)
	require.NoError(t, err)
	assert.Equal(t, "fixed vhd ", string(buf))
}

// convert's raw output may be a block device (written in place); any other
// format's is refused there, naming the device.
func TestCreateImageOnBlockDevice(t *testing.T) {
	dev, backing := testutil.LoopDevice(t, 2<<20, 0xAA)
	tests := []struct {
		format  string
		wantErr string
	}{
		{"raw", ""},
		{"vmdk", dev + ": is a device: only a raw image is written to a device"},
		{"qcow2", dev + ": is a device: only a raw image is written to a device"},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			f, err := Lookup(tc.format)
			require.NoError(t, err)
			out := disk.NewOutput(true)
			defer out.Abort()
			w, err := f.CreateImage(out, dev, 1<<20, nil)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			data := bytes.Repeat([]byte{0x55}, 1<<20)
			require.NoError(t, w.WriteChunk(&disk.Chunk{Offset: 0, Data: data, Length: len(data)}))
			require.NoError(t, w.Close())
			require.NoError(t, out.Commit())
			got, err := os.ReadFile(backing)
			require.NoError(t, err)
			assert.Equal(t, append(data, bytes.Repeat([]byte{0xAA}, 1<<20)...), got)
		})
	}
}

// Every setting "-o help" lists is one the writer takes, and an unknown
// one is refused naming exactly the listed ones.
func TestOptionHelpMatchesWriters(t *testing.T) {
	sample := map[string]string{"<bool (on/off)>": "off", "<size>": "1M", "<num>": "1", "<str>": "x"}
	for _, f := range All() {
		if f.CreateImage == nil {
			continue
		}
		t.Run(f.Name, func(t *testing.T) {
			create := func(opts map[string]string) error {
				out := disk.NewOutput(false)
				defer out.Abort()
				_, err := f.CreateImage(out, filepath.Join(t.TempDir(), "x"), 1<<20, opts)
				return err
			}
			for _, h := range f.Options {
				v, ok := sample[h.Value]
				require.True(t, ok, "%s: value kind %q", h.Name, h.Value)
				if err := create(map[string]string{h.Name: v}); err != nil {
					assert.NotContains(t, err.Error(), "unknown option", h.Name)
				}
			}
			err := create(map[string]string{"frobnicate": "1"})
			require.ErrorContains(t, err, `unknown option "frobnicate"`)
			if len(f.Options) > 0 {
				assert.Contains(t, err.Error(), "(known: "+createopt.Known(f.Options)+")")
			}
		})
	}
}
