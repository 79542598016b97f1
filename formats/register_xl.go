package formats

import (
	"context"
	"fmt"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/createopt"
	"github.com/vmconv/vmconv/formats/neutral"
	"github.com/vmconv/vmconv/formats/qcow2"
	"github.com/vmconv/vmconv/formats/vhd"
	"github.com/vmconv/vmconv/formats/xl"
)

func init() {
	Register(&Format{
		Name:       "xl",
		Options:    xlOptions,
		Compress:   compressXL,
		Exts:       []string{".cfg", ".xl"},
		DiskFormat: "raw",
		Magic:      xl.Detect,
		OpenVM:     func(path string) (*neutral.VM, error) { return readXL(path, false) },
		DescribeVM: func(path string) (*neutral.VM, error) { return readXL(path, true) },
		WriteVM:    writeXL,
	})
}

func readXL(path string, describe bool) (*neutral.VM, error) {
	return xl.Read(path, xl.ReadOptions{MarkMissing: describe, Open: openXLDisk, Capacity: xlDiskCapacity})
}

// xlDiskCapacity is the size an xl.cfg's disk file states when a file it
// names is absent: a qcow2 overlay's header, a differencing VHD's footer.
func xlDiskCapacity(path, format string) (int64, error) {
	switch format {
	case "qcow2":
		return qcow2.Capacity(path)
	case "vhd":
		return vhd.Capacity(path)
	}
	return 0, fmt.Errorf("format=%s names no other file", format)
}

// openXLDisk opens a disk an xl.cfg names in its format=; a raw target may
// be a block device.
func openXLDisk(path, format string) (disk.Image, error) {
	if format == "" || format == "raw" {
		return disk.OpenRaw(path)
	}
	f, err := Lookup(format)
	if err != nil {
		return nil, fmt.Errorf("format=%s: %w", format, err)
	}
	if f.OpenImage == nil {
		return nil, fmt.Errorf("format=%s cannot be read", format)
	}
	return f.OpenImage(path)
}

// writeXL writes NAME.cfg and its disks: raw by default, or -o
// disk_format=qcow2|vhd through those formats' writers (other options go
// to the disk writer).
func writeXL(ctx context.Context, out *disk.Output, path string, vm *neutral.VM, opts map[string]string, copyOpt disk.CopyOptions) error {
	wo := xl.WriteOptions{DiskFormat: "raw"}
	diskOpts := map[string]string{}
	for k, v := range opts {
		if k == "disk_format" {
			wo.DiskFormat = v
			continue
		}
		diskOpts[k] = v
	}
	if wo.DiskFormat == "raw" && len(diskOpts) > 0 {
		return fmt.Errorf("xl: unknown option(s) %v (known: %s)", diskOpts, createopt.Known(xlOptions))
	}
	if wo.DiskFormat != "raw" {
		f, err := Lookup(wo.DiskFormat)
		if err != nil {
			return fmt.Errorf("xl: disk_format=%s: %w", wo.DiskFormat, err)
		}
		if f.CreateImage == nil {
			return fmt.Errorf("xl: disk_format=%s cannot be written", wo.DiskFormat)
		}
		wo.NewDisk = func(out *disk.Output, path string, size int64) (disk.Writer, error) {
			return f.CreateImage(out, path, size, diskOpts)
		}
	}
	return xl.Write(ctx, out, path, vm, wo, copyOpt)
}

// compressXL is -c for an xl.cfg: its disks compressed, which of its disk
// formats only qcow2 can be (as qemu-img, raw and vhd refuse it).
func compressXL(opts map[string]string) (string, error) {
	if opts["disk_format"] != "qcow2" {
		return "", fmt.Errorf("-c: the disks of an xl.cfg compress only as qcow2: add -o disk_format=qcow2")
	}
	q, err := Lookup("qcow2")
	if err != nil {
		return "", err
	}
	return q.Compress(opts)
}

// xlOptions are the settings of the xl.cfg writer; with a disk_format other
// than raw, the other settings go to that format's writer.
var xlOptions = []createopt.Help{
	{Name: "disk_format", Value: "<str>", Text: "format of the disks beside NAME.cfg: raw (default), qcow2 or vhd; that format's settings may follow"},
}
