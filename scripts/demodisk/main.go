// Command demodisk writes the demo's sample disk: an MBR with one FAT32
// partition that holds a kernel and a GRUB configuration booting it, the
// way a small Linux guest's /boot looks, so that `vmconv verify` finds and
// boots it after every conversion. It is written with go-diskfs, so the
// demo needs nothing beyond Go and gcc (which builds the probe kernel).
//
//	demodisk OUT.raw SIZE_BYTES KERNEL
package main

import (
	"fmt"
	"io"
	"os"
	"strconv"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/mbr"
)

// The boot partition: 1 MiB in, as partitioning tools align it, and large
// enough for FAT32.
const (
	partStart = 2048           // sectors
	partSize  = 48 << 20 / 512 // sectors
)

const grubCfg = `# the demo's probe guest: it prints "probe: all done" and powers off
set default=0
set timeout=1
menuentry 'vmconv demo (probe guest)' {
	linux /boot/vmlinuz-probe console=ttyS0
}
`

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: demodisk OUT.raw SIZE_BYTES KERNEL")
		os.Exit(2)
	}
	size, err := strconv.ParseInt(os.Args[2], 0, 64)
	if err == nil {
		err = write(os.Args[1], size, os.Args[3])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demodisk:", err)
		os.Exit(1)
	}
}

func write(out string, size int64, kernelPath string) error {
	kernel, err := os.ReadFile(kernelPath)
	if err != nil {
		return err
	}
	if size < (partStart+partSize)*512 {
		return fmt.Errorf("a disk of %d bytes cannot hold the boot partition", size)
	}
	os.Remove(out)
	d, err := diskfs.Create(out, size, diskfs.SectorSizeDefault)
	if err != nil {
		return err
	}
	defer d.Close()
	table := &mbr.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, Partitions: []*mbr.Partition{
		{Index: 1, Bootable: true, Type: mbr.Fat32LBA, Start: partStart, Size: partSize},
	}}
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("%s: partition table: %w", out, err)
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: "BOOT"})
	if err != nil {
		return fmt.Errorf("%s: FAT32: %w", out, err)
	}
	if err := fs.Mkdir("/boot/grub"); err != nil {
		return err
	}
	for name, data := range map[string][]byte{"/boot/vmlinuz-probe": kernel, "/boot/grub/grub.cfg": []byte(grubCfg)} {
		f, err := fs.OpenFile(name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", out, name, err)
		}
		if _, err := f.Write(data); err != nil {
			return fmt.Errorf("%s: %s: %w", out, name, err)
		}
		if c, ok := f.(io.Closer); ok {
			c.Close()
		}
	}
	return nil
}
