package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// WildGuestVariants are the guests testdata/guest/build-wild.sh builds:
// "xfs-lvm-efi" (GPT, FAT32 ESP, /boot on XFS, root on LVM2 ext4),
// "btrfs" (MBR, btrfs with subvolumes @ and @home, or a plain top level when
// the host's mkfs.btrfs has no --subvol; the directory's "layout" file says
// which), "broken" (ext4 on MBR with an initramfs that has no virtio_blk,
// root=/dev/sda1, a static address on ens192) and "dracut-lvm" (RHEL's
// layout: /boot on XFS, root on LVM, a dracut initramfs without virtio_blk).
var WildGuestVariants = []string{"xfs-lvm-efi", "btrfs", "broken", "dracut-lvm"}

// WildGuestDir is where testdata/guest/build-wild.sh caches variant, keyed by
// the script's hash: ${XDG_CACHE_HOME:-$HOME/.cache}/vmconv/guest-wild/
// <variant>/<hash>. VMCONV_WILD_GUEST_ROOT overrides everything before
// <variant> (the directory then holds <variant>/guest.vmx). repoRoot is the
// path of the repository's top. The directory may not exist yet.
func WildGuestDir(repoRoot, variant string) (string, error) {
	if d := os.Getenv("VMCONV_WILD_GUEST_ROOT"); d != "" {
		return filepath.Join(d, variant), nil
	}
	return scriptCache(repoRoot, "build-wild.sh", filepath.Join("guest-wild", variant))
}

// RequireWildGuest returns the directory of a built wild guest, or skips (fails
// when strict) when it is not built.
func RequireWildGuest(t testing.TB, repoRoot, variant string) string {
	t.Helper()
	d, err := WildGuestDir(repoRoot, variant)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d, "guest.vmx")); err != nil {
		Unavailable(t, "the "+variant+" guest is not built: run testdata/guest/build-wild.sh "+variant+" (as root) to make "+d)
	}
	return d
}
