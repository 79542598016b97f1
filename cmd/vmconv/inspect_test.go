package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/vmconv/vmconv/boot"
	"github.com/vmconv/vmconv/guest"
)

// The human report's boot line names the initrd, or says there is none (a
// GRUB legacy or extlinux entry may boot a kernel alone).
func TestPrintReportBootLine(t *testing.T) {
	tests := []struct {
		name, initrd, want string
	}{
		{"with initrd", "/boot/initrd.img-6.1.0-50-amd64", "boots: /boot/vmlinuz-6.1.0-50-amd64 (initrd /boot/initrd.img-6.1.0-50-amd64) from disk 0 partition 1: /boot/grub/grub.cfg\n"},
		{"kernel alone", "", "boots: /boot/vmlinuz-6.1.0-50-amd64 (no initrd) from disk 0 partition 1: /boot/grub/grub.cfg\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			printReport(&out, &guest.Report{Boot: &boot.Entry{
				KernelPath: "/boot/vmlinuz-6.1.0-50-amd64", InitrdPath: tc.initrd,
				Config: "disk 0 partition 1: /boot/grub/grub.cfg",
			}})
			assert.Contains(t, out.String(), tc.want)
		})
	}
}
