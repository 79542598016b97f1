package main

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/formats"
	"github.com/vmconv/vmconv/formats/neutral"
)

// info describes a VM through any format's DescribeVM, and warns once per
// missing disk whichever format marked it.
func TestDescribeVMAnyFormat(t *testing.T) {
	oneMissing := &neutral.VM{Name: "web", Disks: []neutral.Disk{
		{ID: "disk0", Device: "disk", Bus: "scsi", Missing: true, File: "/vmfs/volumes/ds1/web/web.vmdk"},
		{ID: "disk1", Device: "disk", Bus: "scsi", Missing: true},
		{ID: "cd", Device: "cdrom", Bus: "ide"},
	}}
	errOpen := errors.New("open failed")
	tests := []struct {
		name       string
		format     formats.Format
		wantErr    error
		wantStderr string
		wantLines  []string
	}{
		{
			name: "DescribeVM preferred over OpenVM",
			format: formats.Format{Name: "other",
				OpenVM:     func(string) (*neutral.VM, error) { return nil, errOpen },
				DescribeVM: func(string) (*neutral.VM, error) { return oneMissing, nil }},
			wantStderr: "vmconv: warning: x.cfg: disk disk0: /vmfs/volumes/ds1/web/web.vmdk not found\n" +
				"vmconv: warning: x.cfg: disk disk1: (file not named) not found\n",
			wantLines: []string{
				"disk disk0: disk on scsi unit 0, size unknown (missing: /vmfs/volumes/ds1/web/web.vmdk)\n",
				"disk disk1: disk on scsi unit 0, size unknown (missing: file not named)\n",
				"disk cd: cdrom on ide unit 0, empty\n",
			},
		},
		{
			name: "without DescribeVM, OpenVM and its error",
			format: formats.Format{Name: "other",
				OpenVM: func(string) (*neutral.VM, error) { return nil, errOpen }},
			wantErr: errOpen,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vm, err := describeVM("x.cfg", &tc.format)
			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			var stderr, stdout bytes.Buffer
			warnMissing(&stderr, "x.cfg", vm)
			assert.Equal(t, tc.wantStderr, stderr.String())
			printVM(&stdout, vm)
			for _, l := range tc.wantLines {
				assert.Contains(t, stdout.String(), l)
			}
		})
	}
}

// info's human lines: the parts a source left out are said, not printed
// empty, and the flags are comma-separated.
func TestSummaries(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{diskSummary(neutral.Disk{Device: "disk", Bus: "scsi", Unit: 1, CapacityBytes: 20 << 30, Bootable: true}),
			"disk on scsi unit 1, 20 GiB, bootable"},
		{diskSummary(neutral.Disk{Device: "disk", Bus: "xen", CapacityBytes: 3 << 20, ReadOnly: true}),
			"disk on xen unit 0, 3 MiB, read-only"},
		{diskSummary(neutral.Disk{Device: "cdrom", Bus: "sata", ReadOnly: true}), "cdrom on sata unit 0, empty, read-only"},
		{diskSummary(neutral.Disk{Device: "cdrom", Bus: "ide", Unit: 1, CapacityBytes: 4 << 20}), "cdrom on ide unit 1, 4 MiB"},
		{diskSummary(neutral.Disk{Device: "disk", Bus: "nvme", Missing: true, Bootable: true, File: "/vmfs/volumes/ds1/a.vmdk"}),
			"disk on nvme unit 0, size unknown, bootable (missing: /vmfs/volumes/ds1/a.vmdk)"},
		{diskSummary(neutral.Disk{Device: "cdrom", Bus: "ide", Missing: true, File: "x.iso"}),
			"cdrom on ide unit 0, size unknown (missing: x.iso)"},
		{diskSummary(neutral.Disk{Device: "disk", Bus: "scsi", Missing: true}),
			"disk on scsi unit 0, size unknown (missing: file not named)"},
		// An .ovf declares the capacity of a disk it does not carry.
		{diskSummary(neutral.Disk{Device: "disk", Bus: "scsi", Missing: true, CapacityBytes: 320 << 30, File: "untangle.vmdk"}),
			"disk on scsi unit 0, 320 GiB (missing: untangle.vmdk)"},

		{nicSummary(neutral.NIC{Model: "vmxnet3", MAC: "00:50:56:9a:1b:2c", Network: "VM Network"}),
			`vmxnet3, MAC 00:50:56:9a:1b:2c, network "VM Network"`},
		{nicSummary(neutral.NIC{Model: "e1000"}), "e1000, no MAC (the hypervisor assigns one)"},
		{nicSummary(neutral.NIC{MAC: "00:16:3e:00:00:01", Network: "xenbr0"}), `MAC 00:16:3e:00:00:01, network "xenbr0"`},

		{bootSummary(neutral.Boot{Kernel: "/boot/vmlinuz", Initrd: "/boot/initrd.img", Cmdline: "root=/dev/xvda1 ro"}),
			`kernel /boot/vmlinuz, initrd /boot/initrd.img, cmdline "root=/dev/xvda1 ro"`},
		{bootSummary(neutral.Boot{Cmdline: "root=/dev/xvda1"}), `cmdline "root=/dev/xvda1"`},
		{bootSummary(neutral.Boot{Kernel: "/k"}), "kernel /k"},
		{bootSummary(neutral.Boot{}), "nothing given"},
	} {
		assert.Equal(t, tc.want, tc.got)
	}
}
