package qcow2

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk/disktest"
)

// Internal snapshots taken by qemu-img snapshot, the disk written and
// grown between them: each reads as qemu-img convert -l reads it, and the
// table lists them as qemu-img info does.
func TestReadInternalSnapshots(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "snap.qcow2")
	disktest.QemuImg(t, "create", "-f", "qcow2", "-o", "cluster_size=4k", p, "8M")
	qemuIO(t, p, "write -P 0x11 0 1M", "write -P 0x12 7M 64k")
	disktest.QemuImg(t, "snapshot", "-c", "first", p)
	qemuIO(t, p, "write -P 0x22 512k 1M", "write -z 7M 4k")
	disktest.QemuImg(t, "resize", "-q", p, "12M")
	disktest.QemuImg(t, "snapshot", "-c", "second", p)
	qemuIO(t, p, "write -P 0x33 0 64k", "write -P 0x34 11M 8k")

	var info struct {
		Snapshots []Snapshot `json:"snapshots"`
	}
	require.NoError(t, json.Unmarshal([]byte(disktest.QemuImg(t, "info", "--output", "json", p)), &info))
	img, err := Open(p)
	require.NoError(t, err)
	got := img.Snapshots()
	require.NoError(t, img.Close())
	require.Len(t, got, 2)
	for i := range got {
		assert.Equal(t, info.Snapshots[i].ID, got[i].ID)
		assert.Equal(t, info.Snapshots[i].Name, got[i].Name)
		assert.Equal(t, info.Snapshots[i].DateSec, got[i].DateSec)
		assert.Equal(t, info.Snapshots[i].DateNsec, got[i].DateNsec)
		assert.Equal(t, info.Snapshots[i].VMStateSize, got[i].VMStateSize)
	}
	assert.Equal(t, uint64(8<<20), got[0].DiskSize)
	assert.Equal(t, uint64(12<<20), got[1].DiskSize)

	for _, tc := range []struct{ param, qemuParam string }{
		{"first", "snapshot.name=first"},
		{"1", "snapshot.id=1"},
		{"snapshot.name=second", "snapshot.name=second"},
		{"snapshot.id=2,snapshot.name=second", "snapshot.id=2"},
	} {
		t.Run(tc.param, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "want.raw")
			disktest.QemuImg(t, "convert", "-l", tc.qemuParam, "-O", "raw", p, out)
			want, err := os.ReadFile(out)
			require.NoError(t, err)
			img, err := OpenWith(p, OpenOptions{Snapshot: tc.param})
			require.NoError(t, err)
			defer img.Close()
			require.Equal(t, int64(len(want)), img.Size())
			require.True(t, string(want) == string(disktest.ReadAll(t, img)), "contents differ from qemu-img convert -l")
			disktest.RequireExtentsCover(t, img, want)
		})
	}

	for _, param := range []string{"third", "snapshot.id=1,snapshot.name=second", "snapshot.tag=x"} {
		_, err := OpenWith(p, OpenOptions{Snapshot: param})
		require.Error(t, err, param)
		assert.Contains(t, err.Error(), p)
	}
	_, err = OpenWith(p, OpenOptions{Snapshot: "third"})
	require.ErrorContains(t, err, "1 (first), 2 (second)")
}

// qemu-img snapshot -c as the last thing done to an image puts the table at
// the end of the file, padded between entries but not after the last one:
// names of 1, 4 and 17 bytes leave the file ending off an 8-byte boundary.
// Each reads as qemu-img convert -l reads it.
func TestReadSnapshotTableAtEndOfFile(t *testing.T) {
	for _, names := range [][]string{{"snap"}, {"a", "snap"}, {"weekly-2026-12-08", "a", "snap"}} {
		t.Run(names[0], func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "last.qcow2")
			disktest.QemuImg(t, "create", "-f", "qcow2", p, "1000448")
			qemuIO(t, p, "write -P 0x5a 64k 4k")
			for _, n := range names {
				disktest.QemuImg(t, "snapshot", "-c", n, p)
			}
			img, err := Open(p)
			require.NoError(t, err)
			var got []string
			for _, s := range img.Snapshots() {
				got = append(got, s.Name)
			}
			require.NoError(t, img.Close())
			assert.Equal(t, names, got)

			last := names[len(names)-1]
			out := filepath.Join(t.TempDir(), "want.raw")
			disktest.QemuImg(t, "convert", "-l", "snapshot.name="+last, "-O", "raw", p, out)
			want, err := os.ReadFile(out)
			require.NoError(t, err)
			img, err = OpenWith(p, OpenOptions{Snapshot: last})
			require.NoError(t, err)
			defer img.Close()
			require.True(t, string(want) == string(disktest.ReadAll(t, img)), "contents differ from qemu-img convert -l")
		})
	}
}
