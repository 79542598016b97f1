package ovf_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats"
	"github.com/vmconv/vmconv/formats/neutral"
	"github.com/vmconv/vmconv/internal/testutil"
)

const foreignDiskSize = 8 << 20

// foreignOVA builds an OVA as other tools do: qemu-img writes the
// streamOptimized disk, Python's tarfile the archive, around a real
// VirtualBox descriptor (its capacity set to the disk's). order lists the
// members ("ovf", "disk"); mfAt places the manifest; corrupt flips a byte
// of the disk after the manifest was made. It returns the OVA and the raw
// disk it holds.
func foreignOVA(t *testing.T, order []string, mfAt string, corrupt bool) (string, string) {
	t.Helper()
	testutil.RequireTool(t, "qemu-img")
	testutil.RequireTool(t, "python3")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	f, err := os.Create(raw)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(foreignDiskSize))
	for _, off := range []int64{0, 1 << 20, 5<<20 + 4096, foreignDiskSize - 512} {
		_, err := f.WriteAt(bytes.Repeat([]byte("vmconv!"), 73), off)
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())
	vmdkPath := filepath.Join(dir, "box-disk1.vmdk")
	testutil.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, vmdkPath)
	desc, err := os.ReadFile(filepath.Join("testdata", "vbox-nxos-box.ovf"))
	require.NoError(t, err)
	desc = bytes.Replace(desc, []byte(`ovf:capacity="4294967296"`), []byte(`ovf:capacity="`+strconv.Itoa(foreignDiskSize)+`"`), 1)
	ovfPath := filepath.Join(dir, "box.ovf")
	require.NoError(t, os.WriteFile(ovfPath, desc, 0o644))
	args := []string{filepath.Join("testdata", "tools", "mkova.py"), filepath.Join(dir, "box.ova")}
	for _, m := range order {
		if m == "ovf" {
			args = append(args, ovfPath)
		} else {
			args = append(args, vmdkPath)
		}
	}
	if mfAt != "" {
		args = append(args, "--mf=box.mf", "--mf-at="+mfAt)
	}
	if corrupt {
		// Make the manifest first, then change the disk in the archive.
		testutil.Run(t, "python3", args...)
		ova := filepath.Join(dir, "box.ova")
		data, err := os.ReadFile(ova)
		require.NoError(t, err)
		i := bytes.Index(data, []byte("KDMV"))
		require.Positive(t, i)
		data[i+2048] ^= 0xff // inside the embedded descriptor's padding
		require.NoError(t, os.WriteFile(ova, data, 0o644))
		return ova, raw
	}
	testutil.Run(t, "python3", args...)
	return filepath.Join(dir, "box.ova"), raw
}

func rawDigest(t *testing.T, path string) string {
	t.Helper()
	img, err := disk.OpenRaw(path)
	require.NoError(t, err)
	defer img.Close()
	d, err := disk.Digest(context.Background(), img, disk.CopyOptions{})
	require.NoError(t, err)
	return d
}

// streamDigest reads every disk of an OVA in one pass and returns the
// digest of each by id.
func streamDigest(t *testing.T, path string) (*neutral.VM, map[string]string, error) {
	t.Helper()
	f, err := formats.Lookup("ova")
	require.NoError(t, err)
	fh, err := os.Open(path)
	require.NoError(t, err)
	defer fh.Close()
	vs, err := f.StreamVM(struct{ io.Reader }{fh}) // a pipe: no Seek, no ReadAt
	if err != nil {
		return nil, nil, err
	}
	out := map[string]string{}
	for {
		id, s, err := vs.NextDisk()
		if err == io.EOF {
			return vs.VM(), out, nil
		}
		if err != nil {
			return vs.VM(), out, err
		}
		tmp := filepath.Join(t.TempDir(), "d.raw")
		o := disk.NewOutput(false)
		fh, err := o.Create(tmp)
		require.NoError(t, err)
		if err := disk.CopyStream(context.Background(), s, disk.NewRawWriter(fh, s.Size()), disk.CopyOptions{}); err != nil {
			o.Abort()
			return vs.VM(), out, err
		}
		require.NoError(t, o.Commit())
		out[id] = rawDigest(t, tmp)
	}
}

func TestForeignOVA(t *testing.T) {
	tests := []struct {
		name    string
		order   []string
		mfAt    string
		corrupt bool
		wantErr string
	}{
		{name: "ovf first, manifest second", order: []string{"ovf", "disk"}, mfAt: "second"},
		{name: "manifest last", order: []string{"ovf", "disk"}, mfAt: "last"},
		{name: "no manifest", order: []string{"ovf", "disk"}},
		{name: "disk before the descriptor", order: []string{"disk", "ovf"}, mfAt: "last"},
		{name: "corrupt disk, manifest second", order: []string{"ovf", "disk"}, mfAt: "second", corrupt: true, wantErr: `SHA256 of "box-disk1.vmdk"`},
		{name: "corrupt disk, manifest last", order: []string{"ovf", "disk"}, mfAt: "last", corrupt: true, wantErr: `SHA256 of "box-disk1.vmdk"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ova, raw := foreignOVA(t, tc.order, tc.mfAt, tc.corrupt)
			want := rawDigest(t, raw)

			// From a file: random access over the members.
			vm, err := formats.OpenVM(ova, mustLookup(t, "ova"))
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
			} else {
				require.NoError(t, err)
				defer vm.Close()
				assert.Equal(t, "edev", vm.Name)
				assert.Equal(t, "uefi", vm.Firmware)
				require.Len(t, vm.Disks, 2)
				assert.Equal(t, int64(foreignDiskSize), vm.Disks[0].CapacityBytes)
				got, err := disk.Digest(context.Background(), vm.Disks[0].Image, disk.CopyOptions{})
				require.NoError(t, err)
				assert.Equal(t, want, got)
			}

			// From a pipe: one pass.
			svm, digests, err := streamDigest(t, ova)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "edev", svm.Name)
			assert.Equal(t, map[string]string{"sata0:0": want}, digests)
		})
	}
}

func mustLookup(t *testing.T, name string) *formats.Format {
	f, err := formats.Lookup(name)
	require.NoError(t, err)
	return f
}

// An OVA whose disk is not a VMDK: the descriptor names qcow2 and the
// registry's qcow2 reader opens it (from a temporary copy: it needs a
// file); a pipe cannot carry it, which the error says.
func TestOVAWithQcow2Disk(t *testing.T) {
	if f, err := formats.Lookup("qcow2"); err != nil || f.OpenImage == nil {
		t.Skip("qcow2 is not a registered readable format here")
	}
	testutil.RequireTool(t, "qemu-img")
	testutil.RequireTool(t, "python3")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	require.NoError(t, os.WriteFile(raw, bytes.Repeat([]byte("qcow2 in an ova "), foreignDiskSize/16), 0o644))
	q := filepath.Join(dir, "box-disk1.vmdk")
	testutil.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, q)
	desc, err := os.ReadFile(filepath.Join("testdata", "vbox-nxos-box.ovf"))
	require.NoError(t, err)
	desc = bytes.Replace(desc, []byte(`ovf:capacity="4294967296"`), []byte(`ovf:capacity="`+strconv.Itoa(foreignDiskSize)+`"`), 1)
	desc = bytes.Replace(desc, []byte("http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"),
		[]byte("http://www.gnome.org/~markmc/qcow-image-format.html"), 1)
	ovfPath := filepath.Join(dir, "box.ovf")
	require.NoError(t, os.WriteFile(ovfPath, desc, 0o644))
	cert := filepath.Join(dir, "box.cert")
	require.NoError(t, os.WriteFile(cert, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644))
	ova := filepath.Join(dir, "box.ova")
	testutil.Run(t, "python3", filepath.Join("testdata", "tools", "mkova.py"), ova, ovfPath, q, cert, "--mf=box.mf", "--mf-at=second")

	vm, err := formats.OpenVM(ova, mustLookup(t, "ova"))
	require.NoError(t, err)
	defer vm.Close()
	got, err := disk.Digest(context.Background(), vm.Disks[0].Image, disk.CopyOptions{})
	require.NoError(t, err)
	assert.Equal(t, rawDigest(t, raw), got)

	_, _, err = streamDigest(t, ova)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot be read from a pipe")
}

// Damaged archives: a clear error naming the file and where, never a panic.
func TestBadOVA(t *testing.T) {
	ova, _ := foreignOVA(t, []string{"ovf", "disk"}, "second", false)
	data, err := os.ReadFile(ova)
	require.NoError(t, err)
	dir := t.TempDir()
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"truncated in the disk", data[:len(data)/2], "truncated"},
		{"truncated in the descriptor", data[:700], "truncated"},
		{"not a tar", append([]byte("garbage!"), data[8:]...), "tar header near offset 0x0"},
		{"empty", nil, "no .ovf descriptor among its 0 members"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "bad.ova")
			require.NoError(t, os.WriteFile(p, tc.data, 0o644))
			_, err := formats.OpenVM(p, mustLookup(t, "ova"))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "bad.ova")
			assert.Contains(t, err.Error(), tc.wantErr)
			_, _, serr := streamDigest(t, p)
			require.Error(t, serr)
			t.Logf("file: %v\npipe: %v", err, serr)
		})
	}
}

// ovftool --compress stores disks gzip-compressed (ovf:compression="gzip"):
// read from a file and from a pipe, the manifest covering the stored bytes.
func TestGzipCompressedDisk(t *testing.T) {
	ova, raw := foreignOVA(t, []string{"ovf", "disk"}, "", false)
	dir := filepath.Dir(ova)
	vmdkPath := filepath.Join(dir, "box-disk1.vmdk")
	testutil.Run(t, "python3", "-c", `import gzip,shutil,sys; shutil.copyfileobj(open(sys.argv[1],"rb"), gzip.open(sys.argv[1]+".gz","wb"))`, vmdkPath)
	require.NoError(t, os.Rename(vmdkPath+".gz", vmdkPath))
	desc, err := os.ReadFile(filepath.Join(dir, "box.ovf"))
	require.NoError(t, err)
	desc = bytes.Replace(desc, []byte(`<File ovf:href="box-disk1.vmdk"`), []byte(`<File ovf:compression="gzip" ovf:href="box-disk1.vmdk"`), 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "box.ovf"), desc, 0o644))
	gz := filepath.Join(dir, "gz.ova")
	testutil.Run(t, "python3", filepath.Join("testdata", "tools", "mkova.py"), gz, filepath.Join(dir, "box.ovf"), vmdkPath, "--mf=box.mf")
	want := rawDigest(t, raw)

	vm, err := formats.OpenVM(gz, mustLookup(t, "ova"))
	require.NoError(t, err)
	defer vm.Close()
	got, err := disk.Digest(context.Background(), vm.Disks[0].Image, disk.CopyOptions{})
	require.NoError(t, err)
	assert.Equal(t, want, got)

	_, digests, err := streamDigest(t, gz)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"sata0:0": want}, digests)

	// The OVF directory form too.
	vm2, err := formats.OpenVM(filepath.Join(dir, "box.ovf"), mustLookup(t, "ovf"))
	require.NoError(t, err)
	defer vm2.Close()
	got, err = disk.Digest(context.Background(), vm2.Disks[0].Image, disk.CopyOptions{})
	require.NoError(t, err)
	assert.Equal(t, want, got)
}
