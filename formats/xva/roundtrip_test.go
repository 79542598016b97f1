package xva

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/neutral"
)

// readOva returns the parsed ova.xml of an XVA file.
func readOva(t *testing.T, path string) *Document {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	tr := tar.NewReader(f)
	h, err := tr.Next()
	require.NoError(t, err)
	require.Equal(t, "ova.xml", h.Name)
	b, err := io.ReadAll(tr)
	require.NoError(t, err)
	doc, err := ParseOvaXML(b)
	require.NoError(t, err)
	return doc
}

// objectsByID views a document as id → {class, fields}; XML-RPC structs are
// unordered, so fields compare as maps.
func objectsByID(d *Document) map[string]any {
	m := map[string]any{}
	for i := range d.Objects {
		o := &d.Objects[i]
		m[o.ID] = map[string]any{"class": o.Class, "fields": toJSON(&o.Snapshot)}
	}
	return m
}

// roundTrip reads src, passes the VM through vm.json, writes it back and
// checks that every ova.xml field and every disk came back.
func roundTrip(t *testing.T, src string) {
	vm, err := Open(src)
	require.NoError(t, err)
	defer vm.Close()

	// Through vm.json, as a bundle stores it.
	js, err := json.Marshal(vm)
	require.NoError(t, err)
	var back neutral.VM
	require.NoError(t, json.Unmarshal(js, &back))
	for i := range back.Disks {
		back.Disks[i].Image = vm.Disks[i].Image
	}

	out := filepath.Join(t.TempDir(), "rt.xva")
	f, err := os.Create(out)
	require.NoError(t, err)
	require.NoError(t, Write(context.Background(), f, &back, Options{}, disk.CopyOptions{}))
	require.NoError(t, f.Close())

	a, b := readOva(t, src), readOva(t, out)
	assert.Equal(t, toJSON(&a.Version), toJSON(&b.Version))
	assert.Equal(t, objectsByID(a), objectsByID(b))

	vm2, err := Open(out)
	require.NoError(t, err)
	defer vm2.Close()
	require.Len(t, vm2.Disks, len(vm.Disks))
	for i := range vm.Disks {
		assert.Equal(t, vm.Disks[i].ID, vm2.Disks[i].ID)
		if vm.Disks[i].Image == nil {
			assert.Nil(t, vm2.Disks[i].Image)
			continue
		}
		d1, err := disk.Digest(context.Background(), vm.Disks[i].Image, disk.CopyOptions{})
		require.NoError(t, err)
		d2, err := disk.Digest(context.Background(), vm2.Disks[i].Image, disk.CopyOptions{})
		require.NoError(t, err)
		assert.Equal(t, d1, d2, "disk %s", vm.Disks[i].ID)
	}
	vm.Source, vm2.Source = nil, nil
	strip := func(v *neutral.VM) neutral.VM {
		c := *v
		c.Disks = append([]neutral.Disk(nil), v.Disks...)
		for i := range c.Disks {
			c.Disks[i].Image = nil
		}
		return c
	}
	assert.Equal(t, strip(vm), strip(vm2))
	checkWithPython(t, out)
}

func TestRoundTripXenOrchestra(t *testing.T) {
	src, _ := makeXOFile(t)
	roundTrip(t, src)
}

func TestRoundTripXapi(t *testing.T) {
	dir := t.TempDir()
	desc, _ := xapiDesc(t, dir, "gnu")
	roundTrip(t, writeXapi(t, dir, desc))
}

// Edits made in vm.json reach ova.xml; the rest of the records stays.
func TestWriteAppliesNeutralEdits(t *testing.T) {
	dir := t.TempDir()
	desc, _ := xapiDesc(t, dir, "gnu")
	src := writeXapi(t, dir, desc)
	vm, err := Open(src)
	require.NoError(t, err)
	defer vm.Close()
	vm.Name = "renamed"
	vm.CPUs, vm.CoresPerSocket = 8, 4
	vm.MemoryMiB = 1024
	vm.Firmware = "uefi"
	vm.NICs[0].MAC = "02:00:00:00:00:99"
	vm.NICs = append(vm.NICs, neutral.NIC{MAC: "02:00:00:00:00:aa", Network: "backup net"})
	vm.Disks = vm.Disks[:2] // drop the CD drive

	out := filepath.Join(t.TempDir(), "edit.xva")
	f, err := os.Create(out)
	require.NoError(t, err)
	require.NoError(t, Write(context.Background(), f, vm, Options{Checksum: ChecksumXXHash}, disk.CopyOptions{}))
	require.NoError(t, f.Close())
	checkWithPython(t, out)

	got, err := Open(out)
	require.NoError(t, err)
	defer got.Close()
	assert.Equal(t, "renamed", got.Name)
	assert.Equal(t, 8, got.CPUs)
	assert.Equal(t, 4, got.CoresPerSocket)
	assert.EqualValues(t, 1024, got.MemoryMiB)
	assert.Equal(t, "uefi", got.Firmware)
	require.Len(t, got.Disks, 2)
	require.Len(t, got.NICs, 3)
	assert.Equal(t, "02:00:00:00:00:99", got.NICs[0].MAC)
	assert.Equal(t, "backup net", got.NICs[2].Network)

	doc := readOva(t, out)
	L, err := buildLayout(doc)
	require.NoError(t, err)
	r := record{&doc.Objects[L.vm]}
	for _, f := range []string{"memory_dynamic_max", "memory_dynamic_min", "memory_static_min"} {
		n, _, err := r.integer(f, 0, maxMemory)
		require.NoError(t, err)
		assert.LessOrEqual(t, n, int64(1024*mib), f)
	}
	vbds, err := r.refList("VBDs")
	require.NoError(t, err)
	assert.Len(t, vbds, 2, "the dropped CD drive leaves VM.VBDs")
	start, _, _ := r.integer("VCPUs_at_startup", 0, 100)
	assert.EqualValues(t, 8, start, "VCPUs_at_startup followed VCPUs_max, as in the source")
}
