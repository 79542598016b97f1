package part

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmconv/vmconv/internal/testutil"
)

// sfdiskDisk writes a partition table with sfdisk on a new sparse file.
func sfdiskDisk(t testing.TB, size int64, script string) string {
	t.Helper()
	testutil.RequireTool(t, "sfdisk")
	p := filepath.Join(t.TempDir(), "disk.raw")
	require.NoError(t, os.WriteFile(p, nil, 0o644))
	require.NoError(t, os.Truncate(p, size))
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", p)
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return p
}

type sfdiskJSON struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		SectorSize int    `json:"sectorsize"`
		Partitions []struct {
			Node     string `json:"node"`
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			UUID     string `json:"uuid"`
			Name     string `json:"name"`
			Bootable bool   `json:"bootable"`
			Attrs    string `json:"attrs"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// Our reading of sfdisk's tables must agree with sfdisk's own (--json).
func TestReadAgreesWithSfdisk(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int64
		script string
	}{
		{"mbr primaries", 64 << 20, "label: dos\nlabel-id: 0x1234abcd\nstart=2048, size=20480, type=83, bootable\nstart=22528, size=10240, type=82\nstart=32768, type=c\n"},
		{"mbr extended with logicals", 64 << 20, "label: dos\nlabel-id: 0xdeadbeef\nstart=2048, size=8192, type=83\nstart=10240, type=5\nstart=12288, size=4096, type=83\nstart=18432, size=4096, type=82\nstart=24576, size=8192, type=8e\n"},
		{"gpt", 64 << 20, "label: gpt\nlabel-id: 3E6F1E2A-5F4B-4C1D-9A8E-0B1C2D3E4F50\nstart=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name=\"bios\"\nstart=4096, size=40960, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI System\", uuid=11111111-2222-3333-4444-555555555555\nstart=45056, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"root\", attrs=\"LegacyBIOSBootable\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := sfdiskDisk(t, tc.size, tc.script)
			out, err := exec.Command("sfdisk", "--json", p).Output()
			require.NoError(t, err)
			var js sfdiskJSON
			require.NoError(t, json.Unmarshal(out, &js))
			f, err := os.Open(p)
			require.NoError(t, err)
			defer f.Close()
			tab, err := Read(f, tc.size)
			require.NoError(t, err)
			assert.Equal(t, js.PartitionTable.Label, map[string]string{"mbr": "dos", "gpt": "gpt"}[tab.Kind])
			var want []Partition
			for _, jp := range js.PartitionTable.Partitions {
				if jp.Type == "5" {
					continue // the extended container itself
				}
				want = append(want, Partition{Start: jp.Start * 512, Size: jp.Size * 512, Bootable: jp.Bootable || strings.Contains(jp.Attrs, "LegacyBIOSBootable"), Name: jp.Name})
			}
			require.Len(t, tab.Partitions, len(want))
			for i, w := range want {
				got := tab.Partitions[i]
				assert.Equal(t, w.Start, got.Start, "partition %d start", got.Index)
				assert.Equal(t, w.Size, got.Size, "partition %d size", got.Index)
				assert.Equal(t, w.Bootable, got.Bootable, "partition %d bootable", got.Index)
				assert.Equal(t, w.Name, got.Name, "partition %d name", got.Index)
				assert.True(t, strings.HasSuffix(js.PartitionTable.Partitions[indexOfStart(js, w.Start/512)].Node, itoa(got.Index)), "partition index %d", got.Index)
				if tab.Kind == "gpt" {
					assert.Equal(t, strings.ToLower(js.PartitionTable.Partitions[i].Type), got.Type)
					assert.Equal(t, strings.ToLower(js.PartitionTable.Partitions[i].UUID), got.UUID)
				}
			}
			if tab.Kind == "gpt" {
				assert.Equal(t, strings.ToLower(js.PartitionTable.ID), tab.DiskID)
			} else {
				assert.Equal(t, strings.TrimPrefix(js.PartitionTable.ID, "0x"), tab.DiskID)
			}
		})
	}
}

func indexOfStart(js sfdiskJSON, start int64) int {
	for i, p := range js.PartitionTable.Partitions {
		if p.Start == start && p.Type != "5" {
			return i
		}
	}
	return -1
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func TestLogicalIndexes(t *testing.T) {
	p := sfdiskDisk(t, 64<<20, "label: dos\nstart=2048, size=8192, type=83\nstart=10240, type=5\nstart=12288, size=4096, type=83\nstart=18432, size=4096, type=83\n")
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	tab, err := Read(f, 64<<20)
	require.NoError(t, err)
	var idx []int
	for _, q := range tab.Partitions {
		idx = append(idx, q.Index)
	}
	assert.Equal(t, []int{1, 5, 6}, idx)
}

func TestBackupGPT(t *testing.T) {
	p := sfdiskDisk(t, 16<<20, "label: gpt\nstart=2048, size=4096, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	copy(b[512:1024], make([]byte, 512)) // primary header gone
	tab, err := Read(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	require.Len(t, tab.Partitions, 1)
	assert.Equal(t, int64(2048*512), tab.Partitions[0].Start)
}

func TestReadRejects(t *testing.T) {
	mbr := func(mut func(s []byte)) []byte {
		b := make([]byte, 1<<20)
		b[510], b[511] = 0x55, 0xaa
		mut(b)
		return b
	}
	entry := func(s []byte, i int, status, typ byte, lba, n uint32) {
		e := s[446+16*i:]
		e[0], e[4] = status, typ
		binary.LittleEndian.PutUint32(e[8:], lba)
		binary.LittleEndian.PutUint32(e[12:], n)
	}
	for _, tc := range []struct {
		name string
		disk []byte
		err  string
	}{
		{"no signature", make([]byte, 4096), "no partition table"},
		{"bad status", mbr(func(s []byte) { entry(s, 0, 0x12, 0x83, 1, 10) }), "status 0x12"},
		{"past end", mbr(func(s []byte) { entry(s, 0, 0, 0x83, 2048, 1<<30) }), "past end of disk"},
		{"gpt without header", mbr(func(s []byte) { entry(s, 0, 0, 0xee, 1, 2047) }), "no valid GPT header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tc.disk), int64(len(tc.disk)))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
}

func TestEBRCycle(t *testing.T) {
	b := make([]byte, 1<<20)
	b[510], b[511] = 0x55, 0xaa
	put := func(s []byte, i int, typ byte, lba, n uint32) {
		e := s[446+16*i:]
		e[4] = typ
		binary.LittleEndian.PutUint32(e[8:], lba)
		binary.LittleEndian.PutUint32(e[12:], n)
	}
	put(b, 0, 0x05, 100, 1000)
	for _, at := range []int{100, 300} {
		s := b[at*512:]
		s[510], s[511] = 0x55, 0xaa
		put(s, 0, 0x83, 1, 10)
	}
	put(b[100*512:], 1, 0x05, 200, 10) // → 300
	put(b[300*512:], 1, 0x05, 0, 10)   // → 100 again (offset 0 from the extended start is not "none" here: LBA 0 ends the chain)
	_, err := Read(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	binary.LittleEndian.PutUint32(b[300*512+446+16+8:], 200) // → 300: itself
	_, err = Read(bytes.NewReader(b), int64(len(b)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "loops back")
}

func TestWholeDiskFAT(t *testing.T) {
	testutil.RequireTool(t, "mkfs.vfat")
	p := filepath.Join(t.TempDir(), "fat.img")
	testutil.Run(t, "mkfs.vfat", "-C", p, "4096")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	_, err = Read(bytes.NewReader(b), int64(len(b)))
	assert.True(t, errors.Is(err, ErrNoTable), "%v", err)
}

// zeroPadded reads b followed by zeros up to size: fuzz inputs stay as
// small as the non-zero start of a disk.
type zeroPadded struct {
	b    []byte
	size int64
}

func (z zeroPadded) ReadAt(p []byte, off int64) (int, error) {
	if off >= z.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), z.size-off))
	clear(p[:n])
	if off < int64(len(z.b)) {
		copy(p[:n], z.b[off:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

const fuzzDiskSize = 64 << 10

func fuzzRead(t *testing.T, b []byte) {
	size := max(int64(len(b)), fuzzDiskSize)
	tab, err := Read(zeroPadded{b, size}, size)
	if err != nil {
		return
	}
	for _, p := range tab.Partitions {
		if p.Start < 0 || p.Size <= 0 || p.Start+p.Size > size {
			t.Fatalf("partition %d (%d+%d) outside a %d-byte disk", p.Index, p.Start, p.Size, size)
		}
	}
}

func FuzzMBR(f *testing.F) {
	for _, name := range []string{"mbr-logical.img", "mbr.img"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(bytes.TrimRight(b, "\x00"))
		}
	}
	f.Fuzz(fuzzRead)
}

func FuzzGPT(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "gpt.img")); err == nil {
		f.Add(b[:34*512]) // protective MBR, primary header and entries
	}
	f.Fuzz(fuzzRead)
}

// The fuzz seeds are sfdisk's tables and read as sfdisk lists them.
func TestSeeds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		starts []int64
		idx    []int
	}{
		{"mbr.img", []int64{4, 30}, []int{1, 2}},
		{"mbr-logical.img", []int64{4, 32, 44}, []int{1, 5, 6}},
		{"gpt.img", []int64{40, 64}, []int{1, 2}},
	} {
		b, err := os.ReadFile(filepath.Join("testdata", tc.name))
		require.NoError(t, err)
		tab, err := Read(bytes.NewReader(b), int64(len(b)))
		require.NoError(t, err, tc.name)
		var starts []int64
		var idx []int
		for _, p := range tab.Partitions {
			starts = append(starts, p.Start/512)
			idx = append(idx, p.Index)
		}
		assert.Equal(t, tc.starts, starts, tc.name)
		assert.Equal(t, tc.idx, idx, tc.name)
	}
}
