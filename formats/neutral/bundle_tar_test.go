package neutral

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
)

func TestBundleTarRoundTrip(t *testing.T) {
	dir := t.TempDir()
	c0 := testContent(21, 9*ChunkSize+333)
	c1 := bytes.Clone(c0[:4*ChunkSize]) // shares chunks with disk 0
	vm := testVM(
		Disk{ID: "disk0", Device: "disk", Bus: "scsi", Image: disk.FromReaderAt(bytes.NewReader(c0), int64(len(c0)))},
		Disk{ID: "scsi0:1", Device: "disk", Bus: "scsi", Unit: 1, Image: disk.FromReaderAt(bytes.NewReader(c1), int64(len(c1)))},
		Disk{ID: "cd", Device: "cdrom", Bus: "ide"},
	)
	path := filepath.Join(dir, "web.vmb.tar")
	assert.True(t, Detect(path))
	writeTestBundle(t, path, vm, BundleOptions{})

	// Deterministic: the same VM streamed to a buffer gives the same bytes.
	var buf bytes.Buffer
	require.NoError(t, writeBundleTar(context.Background(), &buf, "-", vm, BundleOptions{}))
	file, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(buf.Bytes(), file), "tar output differs between runs")

	got, err := OpenBundle(path)
	require.NoError(t, err)
	for i, c := range [][]byte{c0, c1} {
		d := got.Disks[i]
		assert.Equal(t, vm.Disks[i].Digest, d.Digest)
		_, eq, err := disk.Compare(context.Background(), d.Image, disk.FromReaderAt(bytes.NewReader(c), int64(len(c))), disk.CopyOptions{})
		require.NoError(t, err)
		assert.True(t, eq, d.ID)
	}
	assert.Nil(t, got.Disks[2].Image)
	require.NoError(t, got.Close())

	// Each distinct non-zero chunk is in the archive once.
	want := map[string]bool{}
	for _, c := range [][]byte{c0, c1} {
		for off := 0; off < len(c); off += ChunkSize {
			p := c[off:min(len(c), off+ChunkSize)]
			if !disk.IsZero(p) {
				s := sha256.Sum256(p)
				h := hex.EncodeToString(s[:])
				want["chunks/"+h[:2]+"/"+h] = true
			}
		}
	}
	names := tarNames(t, file)
	var chunks []string
	for _, n := range names {
		if strings.HasPrefix(n, "chunks/") {
			chunks = append(chunks, n)
		}
	}
	assert.Len(t, chunks, len(want))
	for _, n := range chunks {
		assert.True(t, want[n], n)
	}
	assert.Equal(t, []string{"disks/disk0.json", "disks/scsi0:1.json", "vm.json"}, names[len(names)-3:])

	// GNU tar unpacks it into a bundle directory that opens the same.
	tarBin := testutil.RequireTool(t, "tar")
	unpacked := filepath.Join(dir, "web.vmb")
	require.NoError(t, os.Mkdir(unpacked, 0o755))
	testutil.Run(t, tarBin, "-xf", path, "-C", unpacked)
	fromDir, err := OpenBundle(unpacked)
	require.NoError(t, err)
	defer fromDir.Close()
	d, err := disk.Digest(context.Background(), fromDir.Disks[0].Image, disk.CopyOptions{})
	require.NoError(t, err)
	assert.Equal(t, vm.Disks[0].Digest, d)

	// And a directory bundle packed by GNU tar opens as a tar.
	repacked := filepath.Join(dir, "re.vmb.tar")
	testutil.Run(t, tarBin, "-cf", repacked, "-C", unpacked, ".")
	fromTar, err := OpenBundle(repacked)
	require.NoError(t, err)
	defer fromTar.Close()
	d, err = disk.Digest(context.Background(), fromTar.Disks[1].Image, disk.CopyOptions{})
	require.NoError(t, err)
	assert.Equal(t, vm.Disks[1].Digest, d)
}

func tarNames(t *testing.T, data []byte) []string {
	tr := tar.NewReader(bytes.NewReader(data))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		require.NoError(t, err)
		names = append(names, h.Name)
	}
}

// tarOf builds an archive from name/content pairs.
func tarOf(t *testing.T, files ...string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i := 0; i < len(files); i += 2 {
		require.NoError(t, writeTarFile(tw, files[i], []byte(files[i+1])))
	}
	require.NoError(t, tw.Close())
	return b.Bytes()
}

func TestBundleTarErrors(t *testing.T) {
	dir := t.TempDir()
	content := testContent(5, 3*ChunkSize)
	content[0] = 9
	vm := testVM(Disk{ID: "sda", Device: "disk", Bus: "sata", Image: disk.FromReaderAt(bytes.NewReader(content), int64(len(content)))})
	var good bytes.Buffer
	require.NoError(t, writeBundleTar(context.Background(), &good, "x", vm, BundleOptions{}))
	members := map[string][]byte{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(good.Bytes()))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		b, _ := io.ReadAll(tr)
		members[h.Name] = b
		order = append(order, h.Name)
	}
	rebuild := func(edit func(name string, b []byte) (string, []byte)) []byte {
		var files []string
		for _, n := range order {
			nn, b := edit(n, bytes.Clone(members[n]))
			if nn != "" {
				files = append(files, nn, string(b))
			}
		}
		return tarOf(t, files...)
	}
	first := order[0] // a chunk

	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"flipped byte in chunk", rebuild(func(n string, b []byte) (string, []byte) {
			if n == first {
				b[len(b)/2] ^= 0xff
			}
			return n, b
		}), ":" + first + "): chunk is corrupt"},
		{"missing chunk", rebuild(func(n string, b []byte) (string, []byte) {
			if n == first {
				return "", nil
			}
			return n, b
		}), ":" + first + "): chunk file is missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".vmb.tar")
			require.NoError(t, os.WriteFile(p, tc.data, 0o644))
			got, err := OpenBundle(p)
			require.NoError(t, err)
			defer got.Close()
			_, err = disk.Digest(context.Background(), got.Disks[0].Image, disk.CopyOptions{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "bundle "+p+": disk sda: chunk ")
			assert.Contains(t, err.Error(), tc.want)
		})
	}

	open := []struct {
		name string
		data []byte
		want string
	}{
		{"traversal", rebuild(func(n string, b []byte) (string, []byte) {
			if n == first {
				return "../" + n, b
			}
			return n, b
		}), `member "../` + first + `" is not part of a bundle`},
		{"absolute", rebuild(func(n string, b []byte) (string, []byte) {
			if n == "vm.json" {
				return "/etc/vm.json", b
			}
			return n, b
		}), `member "/etc/vm.json" is not part of a bundle`},
		{"no vm.json", rebuild(func(n string, b []byte) (string, []byte) {
			if n == "vm.json" {
				return "", nil
			}
			return n, b
		}), "vm.json: missing"},
		{"no list", rebuild(func(n string, b []byte) (string, []byte) {
			if strings.HasPrefix(n, "disks/") {
				return "", nil
			}
			return n, b
		}), "disks[0] (sda): disks/sda.json: missing"},
		{"bad vm.json", rebuild(func(n string, b []byte) (string, []byte) {
			if n == "vm.json" {
				b = bytes.Replace(b, []byte(`"cpus": 4`), []byte(`"cpus": 0`), 1)
			}
			return n, b
		}), "vm.json: cpus: 0 is outside"},
		{"wrong hh", rebuild(func(n string, b []byte) (string, []byte) {
			if n == first {
				return "chunks/zz/" + n[10:], b
			}
			return n, b
		}), "is not part of a bundle"},
		{"duplicate", append(rebuild(func(n string, b []byte) (string, []byte) { return n, b })[:0:0],
			tarOf(t, "vm.json", "{}", "vm.json", "{}")...), `member "vm.json" appears twice`},
		{"truncated", good.Bytes()[:1500], "truncated archive"},
		{"not a tar", bytes.Repeat([]byte("x"), 2048), "tar header near offset"},
		{"store elsewhere", rebuild(func(n string, b []byte) (string, []byte) {
			if strings.HasPrefix(n, "disks/") {
				b = bytes.Replace(b, []byte(`"store": "chunks"`), []byte(`"store": "/srv/store"`), 1)
			}
			return n, b
		}), `store "/srv/store": a bundle tar holds its own chunks`},
	}
	for _, tc := range open {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".vmb.tar")
			require.NoError(t, os.WriteFile(p, tc.data, 0o644))
			_, err := OpenBundle(p)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "bundle "+p+": ")
			assert.Contains(t, err.Error(), tc.want)
		})
	}

	out := disk.NewOutput(false)
	defer out.Abort()
	err := WriteBundle(context.Background(), out, filepath.Join(dir, "s.vmb.tar"), vm, BundleOptions{Store: dir})
	assert.ErrorContains(t, err, "--store applies to bundle directories")
}
