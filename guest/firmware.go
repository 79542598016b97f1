package guest

import (
	"fmt"
	"strings"

	"github.com/vmconv/vmconv/boot/part"
)

const (
	gptESP      = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
	gptBIOSBoot = "21686148-6449-6e6f-744e-656564454649"
)

// efiLoader finds an EFI boot loader on a FAT volume: EFI/*/grubx64.efi and
// its kin. It returns the volume's description and the loader's path.
func (c *checkCtx) efiLoader() (string, bool) {
	for _, v := range c.vols {
		if !strings.HasPrefix(v.FSType, "fat") {
			continue
		}
		dirs, err := v.FS.ReadDir("/EFI")
		if err != nil {
			continue
		}
		for _, d := range dirs {
			files, err := v.FS.ReadDir("/EFI/" + d)
			if err != nil {
				continue
			}
			for _, f := range files {
				switch strings.ToLower(f) {
				case "grubx64.efi", "shimx64.efi", "bootx64.efi", "systemd-bootx64.efi":
					return fmt.Sprintf("disk %d partition %d: /EFI/%s/%s", v.Disk, v.Partition, d, f), true
				}
			}
		}
	}
	return "", false
}

// biosBootable reports whether a disk holds BIOS boot code: an MBR with
// code before its partition table, or a GPT BIOS boot partition (where
// GRUB keeps its core image).
func (c *checkCtx) biosBootable() bool {
	for _, d := range c.disks {
		if t, err := part.Read(d, d.Size()); err == nil {
			for _, p := range t.Partitions {
				if p.Type == gptBIOSBoot {
					return true
				}
			}
		}
		var mbr [440]byte
		if _, err := d.ReadAt(mbr[:], 0); err != nil {
			continue
		}
		for _, b := range mbr {
			if b != 0 {
				return true
			}
		}
	}
	return false
}

// checkFirmware: a guest that boots only through UEFI (an ESP with a loader,
// no BIOS boot code) on a VM with BIOS firmware never starts its loader.
func checkFirmware(c *checkCtx) ([]Finding, []string) {
	if c.opt.Firmware == "uefi" {
		return nil, nil
	}
	loader, ok := c.efiLoader()
	if !ok || c.biosBootable() {
		return nil, nil
	}
	f := Finding{Code: "firmware-efi-only", Severity: Error, File: loader,
		Message: "the guest boots only through UEFI (an EFI loader, no BIOS boot code) and the target VM has BIOS firmware",
		Fix:     "give the target VM UEFI firmware (vm.json \"firmware\": \"uefi\", VMX firmware = \"efi\")"}
	if c.opt.Firmware == "" {
		f.Severity = Warning
		f.Message = "the guest boots only through UEFI (an EFI loader, no BIOS boot code)"
		f.Fix = "create the target VM with UEFI firmware"
	}
	return []Finding{f}, nil
}
