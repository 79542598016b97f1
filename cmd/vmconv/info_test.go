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
				"disk cd: cdrom on ide unit 0, 0 B\n",
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
