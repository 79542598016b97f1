package vmx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
)

// esxWeb is a .vmx as copied off an ESXi host: the disks stayed on the
// datastore, named by absolute /vmfs paths.
const esxWeb = `.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "19"
displayName = "web"
guestOS = "debian11-64"
numvcpus = "2"
memSize = "2048"
scsi0.virtualDev = "pvscsi"
scsi0.present = "TRUE"
scsi0:0.deviceType = "scsi-hardDisk"
scsi0:0.fileName = "/vmfs/volumes/datastore1/web/web.vmdk"
scsi0:0.present = "TRUE"
scsi0:1.deviceType = "scsi-hardDisk"
scsi0:1.fileName = "/vmfs/volumes/5f1c2a3b-77aa01c2-9e4d-0050569a1b2c/web/web_1.vmdk"
scsi0:1.present = "TRUE"
sata0.present = "TRUE"
sata0:0.deviceType = "cdrom-image"
sata0:0.fileName = "/vmfs/volumes/datastore1/iso/debian-11.iso"
sata0:0.present = "TRUE"
ethernet0.virtualDev = "vmxnet3"
ethernet0.networkName = "VM Network"
ethernet0.addressType = "vpx"
ethernet0.generatedAddress = "00:50:56:9a:1b:2c"
ethernet0.present = "TRUE"
`

// wsDev is a Workstation .vmx: disks named relative to the .vmx, one in a
// sub-folder.
const wsDev = `.encoding = "windows-1252"
config.version = "8"
virtualHW.version = "21"
displayName = "dev box"
guestOS = "ubuntu-64"
memsize = "4096"
sata0.present = "TRUE"
sata0:1.deviceType = "cdrom-raw"
sata0:1.fileName = "auto detect"
sata0:1.present = "TRUE"
nvme0.present = "TRUE"
nvme0:0.fileName = "dev box.vmdk"
nvme0:0.present = "TRUE"
nvme0:1.fileName = "data/dev box-data.vmdk"
nvme0:1.present = "TRUE"
ethernet0.connectionType = "nat"
ethernet0.virtualDev = "e1000e"
ethernet0.addressType = "generated"
ethernet0.generatedAddress = "00:0c:29:4e:5a:61"
ethernet0.present = "TRUE"
`

func TestReadMarksMissingDisks(t *testing.T) {
	tests := []struct {
		name    string
		vmx     string
		present []string // disk files (relative to the .vmx) created for the test
		// wantMissing is each disk's File when missing, "" when opened;
		// a leading "+" is joined to the .vmx's directory.
		wantMissing []string
		wantIDs     []string
	}{
		{
			name:        "ESX datastore paths, no disk here",
			vmx:         esxWeb,
			wantIDs:     []string{"scsi0:0", "scsi0:1", "sata0:0"},
			wantMissing: []string{"/vmfs/volumes/datastore1/web/web.vmdk", "/vmfs/volumes/5f1c2a3b-77aa01c2-9e4d-0050569a1b2c/web/web_1.vmdk", ""},
		},
		{
			name:        "Workstation relative names, none copied",
			vmx:         wsDev,
			wantIDs:     []string{"sata0:1", "nvme0:0", "nvme0:1"},
			wantMissing: []string{"", "+dev box.vmdk", "+data/dev box-data.vmdk"},
		},
		{
			name:        "Workstation, only the system disk copied",
			vmx:         wsDev,
			present:     []string{"dev box.vmdk"},
			wantIDs:     []string{"sata0:1", "nvme0:0", "nvme0:1"},
			wantMissing: []string{"", "", "+data/dev box-data.vmdk"},
		},
		{
			name:        "Workstation, every disk here",
			vmx:         wsDev,
			present:     []string{"dev box.vmdk", "data/dev box-data.vmdk"},
			wantIDs:     []string{"sata0:1", "nvme0:0", "nvme0:1"},
			wantMissing: []string{"", "", ""},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			vmxPath := filepath.Join(dir, "vm.vmx")
			require.NoError(t, os.WriteFile(vmxPath, []byte(tc.vmx), 0o644))
			for _, p := range tc.present {
				full := filepath.Join(dir, filepath.FromSlash(p))
				require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
				require.NoError(t, os.WriteFile(full, randomBytes(64<<10, 1), 0o644))
			}

			vm, err := ReadWith(vmxPath, openRaw, ReadOptions{MarkMissing: true})
			require.NoError(t, err)
			defer vm.Close()
			require.Equal(t, tc.wantIDs, ids(vm))
			for i, want := range tc.wantMissing {
				d := vm.Disks[i]
				if len(want) > 0 && want[0] == '+' {
					want = filepath.Join(dir, filepath.FromSlash(want[1:]))
				}
				if want == "" {
					assert.False(t, d.Missing, "disk %s", d.ID)
					assert.Empty(t, d.File, "disk %s", d.ID)
					continue
				}
				assert.True(t, d.Missing, "disk %s", d.ID)
				assert.Equal(t, want, d.File, "disk %s", d.ID)
				assert.Nil(t, d.Image, "disk %s", d.ID)
				assert.Zero(t, d.CapacityBytes, "disk %s: the size lives in the absent file", d.ID)
			}

			// Without the option the same VM cannot be read when a disk is
			// missing, and the error names the first missing file.
			_, err = Read(vmxPath, openRaw)
			first := firstMissing(tc.wantMissing)
			if first < 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, fs.ErrNotExist)
			assert.Contains(t, err.Error(), vm.Disks[first].ID+".fileName")
		})
	}
}

func firstMissing(files []string) int {
	for i, f := range files {
		if f != "" {
			return i
		}
	}
	return -1
}

// A disk whose own file is here but a file it names is not (a descriptor
// copied without its extent, a snapshot without its parent) is missing too,
// named by the absent file, its size from the file that is here; any other
// opener error still fails the read and names the disk.
func TestReadMarksDisksWithMissingParts(t *testing.T) {
	errCorrupt := errors.New("grain table 3: out of range")
	tests := []struct {
		name         string
		openErr      func(dir string) error // what the opener says of "dev box.vmdk"
		capacity     func(string) (int64, error)
		wantMissing  string // joined to the .vmx's directory
		wantCapacity int64
		wantErr      error
	}{
		{
			name: "extent gone, size from the descriptor",
			openErr: func(dir string) error {
				return fmt.Errorf("vmdk dev box.vmdk: extent 1: %w", pathGone(dir, "dev box-flat.vmdk"))
			},
			capacity:     func(string) (int64, error) { return 8 << 30, nil },
			wantMissing:  "dev box-flat.vmdk",
			wantCapacity: 8 << 30,
		},
		{
			name: "parent gone, no capacity reader: size unknown",
			openErr: func(dir string) error {
				return fmt.Errorf("vmdk dev box.vmdk: parent: %w", pathGone(dir, "base.vmdk"))
			},
			wantMissing: "base.vmdk",
		},
		{
			name:        "capacity reader fails: size unknown, still described",
			openErr:     func(dir string) error { return pathGone(dir, "dev box-s001.vmdk") },
			capacity:    func(string) (int64, error) { return 0, errCorrupt },
			wantMissing: "dev box-s001.vmdk",
		},
		{
			name:    "corrupt disk: an error",
			openErr: func(string) error { return fmt.Errorf("vmdk dev box.vmdk: %w", errCorrupt) },
			wantErr: errCorrupt,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			vmxPath := filepath.Join(dir, "vm.vmx")
			require.NoError(t, os.WriteFile(vmxPath, []byte(wsDev), 0o644))
			for _, name := range []string{"dev box.vmdk", "data/dev box-data.vmdk"} {
				full := filepath.Join(dir, filepath.FromSlash(name))
				require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
				require.NoError(t, os.WriteFile(full, randomBytes(64<<10, 1), 0o644))
			}
			var gotCapacityOf string
			open := func(p string) (disk.Image, error) {
				if filepath.Base(p) == "dev box.vmdk" {
					return nil, tc.openErr(dir)
				}
				return openRaw(p)
			}
			opt := ReadOptions{MarkMissing: true}
			if tc.capacity != nil {
				opt.Capacity = func(p string) (int64, error) { gotCapacityOf = p; return tc.capacity(p) }
			}
			vm, err := ReadWith(vmxPath, open, opt)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				assert.Contains(t, err.Error(), `nvme0:0.fileName "dev box.vmdk"`)
				return
			}
			require.NoError(t, err)
			defer vm.Close()
			d := vm.Disks[1]
			require.Equal(t, "nvme0:0", d.ID)
			assert.True(t, d.Missing)
			assert.Nil(t, d.Image)
			assert.Equal(t, filepath.Join(dir, tc.wantMissing), d.File)
			assert.Equal(t, tc.wantCapacity, d.CapacityBytes)
			if tc.capacity != nil {
				assert.Equal(t, filepath.Join(dir, "dev box.vmdk"), gotCapacityOf, "the size is read from the file that is here")
			}
			assert.False(t, vm.Disks[2].Missing, "the other disk opens")
			assert.Equal(t, int64(64<<10), vm.Disks[2].CapacityBytes)

			// convert and verify read without the option: the same VM fails.
			_, err = Read(vmxPath, open)
			assert.ErrorIs(t, err, fs.ErrNotExist)
			assert.Contains(t, err.Error(), `nvme0:0.fileName "dev box.vmdk"`)
		})
	}
}

// pathGone is the error an opener gives for a file it looked for in vain
// (joined to the descriptor's directory, as vmdk's paths are).
func pathGone(dir, name string) error {
	return &fs.PathError{Op: "open", Path: filepath.Join(dir, name), Err: fs.ErrNotExist}
}
