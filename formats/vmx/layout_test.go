package vmx

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestNumberedFileName(t *testing.T) {
	for _, tc := range []struct {
		device string
		n      int
		want   string
	}{
		{"disk", 0, "web.vmdk"},
		{"disk", 1, "web_1.vmdk"},
		{"disk", 12, "web_12.vmdk"},
		{"cdrom", 0, "web_cdrom.iso"},
		{"cdrom", 2, "web_cdrom_2.iso"},
	} {
		assert.Equal(t, tc.want, numberedFileName("web", tc.device, tc.n), "%s %d", tc.device, tc.n)
	}
}

func TestPlainFileName(t *testing.T) {
	for _, tc := range []struct {
		hint, device string
		keep         bool
	}{
		{"web.vmdk", "disk", true},
		{"Web-flat.VMDK", "disk", true},
		{"install.iso", "cdrom", true},
		{"", "disk", false},
		{"install.iso", "disk", false},     // the wrong suffix for a disk
		{"web.vmdk", "cdrom", false},       // and for a CD image
		{"web-000001.vmdk", "disk", false}, // a snapshot's delta
		{"../web.vmdk", "disk", false},
		{"/vmfs/volumes/ds1/web.vmdk", "disk", false},
		{`C:\vms\web.vmdk`, "disk", false},
		{".web.vmdk", "disk", false},
		{"..", "disk", false},
	} {
		assert.Equal(t, tc.keep, plainFileName(tc.hint, tc.device), "%q as %s", tc.hint, tc.device)
	}
}
