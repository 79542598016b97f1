package formats

import (
	"context"
	"fmt"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/createopt"
	"github.com/vmconv/vmconv/formats/neutral"
	"github.com/vmconv/vmconv/formats/xl"
)

func init() {
	Register(&Format{
		Name:       "xl",
		Options:    xlOptions,
		Exts:       []string{".cfg", ".xl"},
		DiskFormat: "raw",
		Magic:      xl.Detect,
		OpenVM:     func(path string) (*neutral.VM, error) { return readXL(path, false) },
		DescribeVM: func(path string) (*neutral.VM, error) { return readXL(path, true) },
		WriteVM:    writeXL,
	})
}

func readXL(path string, describe bool) (*neutral.VM, error) {
	return xl.Read(path, xl.ReadOptions{MarkMissing: describe, Open: openXLDisk})
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

// xlOptions are the settings of the xl.cfg writer; with a disk_format other
// than raw, the other settings go to that format's writer.
var xlOptions = []createopt.Help{
	{Name: "disk_format", Value: "<str>", Text: "format of the disks beside NAME.cfg: raw (default), qcow2 or vhd; that format's settings may follow"},
}
