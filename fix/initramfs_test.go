package fix

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"errors"
	"os"
	"path"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"

	"github.com/vmconv/vmconv/boot/initramfs"
)

// memFS is a guest root in memory: path -> contents.
type memFS map[string][]byte

func (m memFS) ReadFile(name string, max int64) ([]byte, error) {
	b, ok := m[path.Clean(name)]
	if !ok {
		return nil, errors.New("no such file")
	}
	if int64(len(b)) > max {
		return nil, errors.New("too large")
	}
	return b, nil
}
func (m memFS) ReadDir(string) ([]string, error) { return nil, errors.New("not a directory") }
func (m memFS) Stat(name string) (int64, bool, error) {
	b, ok := m[name]
	if !ok {
		return 0, false, errors.New("no such file")
	}
	return int64(len(b)), false, nil
}

func xzBytes(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	require.NoError(t, err)
	w.Write(b)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func gzBytes(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// guestRoot has a kernel's module tree shaped as Debian's: modules.dep,
// modules.builtin, and modules plain and compressed.
func guestRoot(t *testing.T) memFS {
	d := "/lib/modules/6.1.0-50-amd64/"
	return memFS{
		d + "modules.dep": []byte("kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n" +
			"kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/virtio/virtio_ring.ko:\n" +
			"kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko.gz\nkernel/fs/jbd2/jbd2.ko.gz:\nkernel/crypto/crc32c_generic.ko:\n"),
		d + "modules.builtin":                       []byte("kernel/drivers/virtio/virtio_mmio.ko\n"),
		d + "kernel/drivers/block/virtio_blk.ko.xz": xzBytes(t, []byte("virtio_blk module")),
		d + "kernel/drivers/virtio/virtio.ko":       []byte("virtio module"),
		d + "kernel/drivers/virtio/virtio_ring.ko":  []byte("virtio_ring module"),
		d + "kernel/fs/ext4/ext4.ko":                []byte("ext4 module"),
		d + "kernel/fs/jbd2/jbd2.ko.gz":             gzBytes([]byte("jbd2 module")),
		d + "kernel/crypto/crc32c_generic.ko":       []byte("crc32c module"),
	}
}

func TestGuestModules(t *testing.T) {
	root := guestRoot(t)
	mods, err := GuestModules(root, "6.1.0-50-amd64", []string{"virtio_mmio", "virtio_blk", "ext4"}, []string{"crc32c_generic", "virtio_pci"})
	require.NoError(t, err)
	var got []string
	for _, m := range mods {
		got = append(got, m.Name+"="+string(m.Data))
	}
	// virtio_mmio is built in; virtio_pci, optional, is not installed.
	assert.Equal(t, []string{"virtio_ring=virtio_ring module", "virtio=virtio module", "virtio_blk=virtio_blk module",
		"jbd2=jbd2 module", "ext4=ext4 module", "crc32c_generic=crc32c module"}, got)
	assert.Equal(t, "crc32c_generic", crcFirst(mods)[0].Name)

	_, err = GuestModules(root, "6.1.0-50-amd64", []string{"btrfs"}, nil)
	assert.ErrorContains(t, err, "module btrfs (needed by the request) is not installed")
	_, err = GuestModules(root, "6.1.0-99-amd64", []string{"ext4"}, nil)
	assert.ErrorContains(t, err, "/lib/modules/6.1.0-99-amd64/modules.dep")

	root["/lib/modules/6.1.0-50-amd64/modules.dep"] = []byte("../../../etc/shadow.ko:\n")
	_, err = GuestModules(root, "6.1.0-50-amd64", []string{"shadow"}, nil)
	assert.ErrorContains(t, err, `names "../../../etc/shadow.ko"`)
}

func TestBuildInitramfs(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	files, err := RuntimeFiles(exe)
	require.NoError(t, err)
	f, err := elf.Open(exe)
	require.NoError(t, err)
	defer f.Close()
	dynamic := false
	for _, p := range f.Progs {
		dynamic = dynamic || p.Type == elf.PT_INTERP
	}
	if dynamic {
		// A cgo build: its loader and libc go with it.
		assert.Greater(t, len(files), 2)
		joined := strings.Join(files, " ")
		assert.Contains(t, joined, "ld-linux")
		assert.Contains(t, joined, "libc.so")
	} else {
		assert.Equal(t, []string{exe}, files)
	}

	plan := &Plan{Kernel: "6.1.0-50-amd64", Root: Mount{Path: "/", UUID: rootUUID, FSType: "ext4"},
		Steps: []Step{{Kind: StepNetLink, MAC: "00:50:56:3f:a2:23", Name: "ens192"}}}
	mods := []Module{{Name: "virtio_ring", Data: []byte("ring")}, {Name: "virtio_blk", Data: []byte("blk")}}
	var buf bytes.Buffer
	require.NoError(t, BuildInitramfs(&buf, exe, plan, mods))

	im, err := initramfs.Read(buf.Bytes(), initramfs.DefaultLimits)
	require.NoError(t, err)
	entries := map[string]initramfs.Entry{}
	for _, e := range im.Entries {
		entries[e.Name] = e
	}
	fi, err := os.Stat(exe)
	require.NoError(t, err)
	require.Contains(t, entries, "init")
	assert.Equal(t, fi.Size(), entries["init"].Size)
	assert.Equal(t, uint32(0o100755), entries["init"].Mode)
	assert.Equal(t, uint32(0o020600), entries["dev/console"].Mode)
	for _, d := range []string{"proc", "sys", "dev", "root", "lib/modules/vmconv-fix"} {
		assert.True(t, entries[d].IsDir(), d)
	}
	for _, lib := range files[1:] {
		assert.True(t, entries[strings.TrimPrefix(lib, "/")].IsRegular(), lib)
	}
	b, err := im.ReadFile("lib/modules/vmconv-fix/01-virtio_blk.ko", 1<<20)
	require.NoError(t, err)
	assert.Equal(t, "blk", string(b))
	pj, err := im.ReadFile(PlanFile, 1<<20)
	require.NoError(t, err)
	var got Plan
	require.NoError(t, json.Unmarshal(pj, &got))
	assert.Equal(t, []string{"00-virtio_ring.ko", "01-virtio_blk.ko"}, got.Modules)
	assert.Equal(t, plan.Steps, got.Steps)
	assert.Nil(t, plan.Modules, "the caller's plan is not changed")
}
