package formats

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/createopt"
	"github.com/vmconv/vmconv/formats/neutral"
	"github.com/vmconv/vmconv/formats/ovf"
	"github.com/vmconv/vmconv/formats/vmdk"
)

func init() {
	Register(&Format{
		Name:       "ovf",
		Options:    ovfOptions,
		Compress:   compressedAnyway, // streamOptimized disks
		Exts:       []string{".ovf"},
		DiskFormat: "vmdk",
		Magic:      ovf.DetectDescriptor,
		OpenVM:     func(path string) (*neutral.VM, error) { return readOVF(path, false) },
		DescribeVM: func(path string) (*neutral.VM, error) { return readOVF(path, true) },
		WriteVM:    writeOVF(false),
		Check:      checkOVF(readOVF),
	})
	Register(&Format{
		Name:       "ova",
		Options:    ovfOptions,
		Compress:   compressedAnyway, // streamOptimized disks
		Exts:       []string{".ova"},
		DiskFormat: "vmdk",
		Magic:      ovf.IsOVA,
		OpenVM:     func(path string) (*neutral.VM, error) { return readOVA(path, false) },
		DescribeVM: func(path string) (*neutral.VM, error) { return readOVA(path, true) },
		WriteVM:    writeOVF(true),
		Check:      checkOVF(readOVA),
		StreamsOut: true,
		StreamVM: func(r io.Reader) (VMStream, error) {
			s, err := ovf.NewStreamReader(r, "-", ovfDisks)
			if err != nil {
				return nil, err
			}
			ovfWarn("-", s.Warnings())
			return s, nil
		},
	})
}

// ovfDisks opens the disks of OVF packages through the registry.
var ovfDisks = ovf.Disks{
	Open: func(path, format string) (disk.Image, error) {
		f, err := ovfDiskFormat(path, format)
		if err != nil {
			return nil, err
		}
		if f.OpenImage == nil {
			return nil, fmt.Errorf("format %s cannot be read", f.Name)
		}
		return f.OpenImage(path)
	},
	OpenAt: func(name string, r io.ReaderAt, size int64, format string) (disk.Image, error) {
		var head [4]byte
		r.ReadAt(head[:], 0)
		if (format == "vmdk" || format == "") && bytes.Equal(head[:], []byte("KDMV")) {
			return vmdk.OpenReaderAt(name, r, size)
		}
		return nil, ovf.ErrNeedFile
	},
	OpenStream: func(r io.Reader, format string) (disk.Stream, error) {
		if format == "" {
			format = "vmdk"
		}
		f, err := Lookup(format)
		if err != nil {
			return nil, err
		}
		if f.OpenStream == nil {
			return nil, fmt.Errorf("a %s disk cannot be read from a pipe; read the OVA from a file", f.Name)
		}
		return f.OpenStream(r)
	},
}

// ovfDiskFormat is the format a descriptor names, or the detected one.
func ovfDiskFormat(path, name string) (*Format, error) {
	if name == "" {
		return Detect(path)
	}
	return Lookup(name)
}

func readOVF(path string, describe bool) (*neutral.VM, error) {
	res, err := ovf.Read(path, ovf.ReadOptions{Disks: ovfDisks, MarkMissing: describe})
	if err != nil {
		return nil, err
	}
	ovfWarn(path, res.Warnings)
	return res.VM, nil
}

// checkOVF reads a package with every file checked against its manifest:
// a mismatch is a problem found; a package that cannot be read is an error.
func checkOVF(read func(string, bool) (*neutral.VM, error)) func(string) ([]disk.Problem, error) {
	return func(path string) ([]disk.Problem, error) {
		vm, err := read(path, false)
		if errors.Is(err, ovf.ErrManifest) {
			return []disk.Problem{{File: path, Offset: -1, What: err.Error()}}, nil
		}
		if err != nil {
			return nil, err
		}
		return nil, vm.Close()
	}
}

// readOVA reads an archive as an OVA whatever its first bytes.
func readOVA(path string, describe bool) (*neutral.VM, error) {
	res, err := ovf.ReadOVA(path, ovf.ReadOptions{Disks: ovfDisks, MarkMissing: describe})
	if err != nil {
		return nil, err
	}
	ovfWarn(path, res.Warnings)
	return res.VM, nil
}

// ovfWarn tells the user, on stderr, what a reader noticed.
func ovfWarn(path string, ws []string) {
	for _, w := range ws {
		fmt.Fprintf(os.Stderr, "vmconv: warning: %s: %s\n", path, w)
	}
}

// writeOVF writes an OVF directory or an OVA with streamOptimized VMDK
// disks. Options: hwversion (the vmx-NN family), compression_level.
func writeOVF(archive bool) func(ctx context.Context, out *disk.Output, path string, vm *neutral.VM, opts map[string]string, copyOpt disk.CopyOptions) error {
	return func(ctx context.Context, out *disk.Output, path string, vm *neutral.VM, opts map[string]string, copyOpt disk.CopyOptions) error {
		wo := ovf.WriteOptions{Archive: archive}
		vo := vmdk.Options{Subformat: vmdk.StreamOptimized}
		for k, v := range opts {
			switch k {
			case "hwversion":
				n, err := strconv.Atoi(v)
				if err != nil || n < 4 || n > 99 {
					return fmt.Errorf("option hwversion=%q: want a virtual hardware version number", v)
				}
				wo.HWVersion = n
			case "compression_level":
				o, err := vmdk.ParseOptions(map[string]string{k: v})
				if err != nil {
					return err
				}
				vo.CompressionLevel = o.CompressionLevel
			default:
				return fmt.Errorf("ovf: unknown option %q (known: %s)", k, createopt.Known(ovfOptions))
			}
		}
		wo.NewDisk = func(out *disk.Output, path string, size int64, adapter string) (disk.Writer, error) {
			o := vo
			o.AdapterType = adapter
			return vmdk.Create(out, path, size, o)
		}
		return ovf.Write(ctx, out, path, vm, wo, copyOpt)
	}
}

// ovfOptions are the settings of the OVF and OVA writers.
var ovfOptions = []createopt.Help{
	{Name: "compression_level", Value: "<num>", Text: "zlib level of the streamOptimized disks' grains, 1 to 9 (default 6)"},
	{Name: "hwversion", Value: "<num>", Text: "VMware virtual hardware version, the VirtualSystemType's vmx-NN (default 14)"},
}
