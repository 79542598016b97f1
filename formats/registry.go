// Package formats is the registry of the image and VM formats vmconv reads
// and writes: it detects a file's format (magic first, then extension) and
// gives the CLI one way to open, create and convert any of them.
package formats

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/createopt"
	"github.com/vmconv/vmconv/formats/neutral"
	"github.com/vmconv/vmconv/formats/qcow2"
)

// Format is one entry of the registry. Disk formats set the image functions,
// VM formats the VM functions; a format may have both.
type Format struct {
	Name string
	// Aliases are other names Lookup accepts (qemu-img's vpc is also vhd).
	Aliases []string
	// Exts are file name extensions, with the dot, used when no magic matches.
	Exts []string
	// Magic reports whether a file's first bytes are this format's.
	Magic func(head []byte) bool
	// TailMagic reports whether a file's last bytes (tailSize of them, or
	// the whole file when shorter) are this format's, for formats whose
	// only signature is at the end (a fixed VHD's footer); size is the
	// file's. It is tried when no format's Magic matched.
	TailMagic func(tail []byte, size int64) bool
	// IsDir reports whether a directory is in this format.
	IsDir func(path string) bool

	// OpenImage opens a disk image for random access.
	OpenImage func(path string) (disk.Image, error)
	// OpenSnapshot opens a disk image as one of its internal snapshots
	// (qemu-img convert -l); nil for formats without them.
	OpenSnapshot func(path, snapshot string) (disk.Image, error)
	// OpenStream reads a disk image once from a pipe.
	OpenStream func(r io.Reader) (disk.Stream, error)
	// CreateImage returns a writer for a new image at path ("-" = stdout
	// where StreamsOut).
	CreateImage func(out *disk.Output, path string, size int64, opts map[string]string) (disk.Writer, error)
	// Measure sizes what CreateImage and a copy would write at path for a
	// disk of size bytes whose data lies in data (qemu-img measure).
	Measure func(path string, size int64, data iter.Seq[disk.Extent], opts map[string]string) (disk.Measurement, error)
	// StreamsOut says the writer can write to a pipe.
	StreamsOut bool
	// ImageInfo gives the format-specific part of `info` for an open image.
	ImageInfo func(img disk.Image) *ImageInfo
	// Options documents the -o settings the writer takes ("-o help").
	Options []createopt.Help
	// Compress gives the -o setting that -c (qemu-img's "compress the
	// target") stands for, given the other settings: "" when the output is
	// compressed anyway, an error when they ask for an uncompressed one.
	// Nil: the format has no compressed form.
	Compress func(opts map[string]string) (string, error)
	// Check verifies structural consistency; problems found are returned,
	// the error is for images that cannot be examined at all.
	Check func(path string) ([]disk.Problem, error)

	// OpenVM reads a whole VM with its disks open.
	OpenVM func(path string) (*neutral.VM, error)
	// DescribeVM reads a VM for `info`: as OpenVM, but a disk whose file is
	// absent is marked Missing (Image nil) instead of failing the read.
	// Formats without it are described through OpenVM.
	DescribeVM func(path string) (*neutral.VM, error)
	// WriteVM writes a whole VM.
	WriteVM func(ctx context.Context, out *disk.Output, path string, vm *neutral.VM, opts map[string]string, copyOpt disk.CopyOptions) error
	// StreamVM reads a VM once from a pipe and hands each disk to fn in order.
	StreamVM func(r io.Reader) (VMStream, error)
	// DiskFormat names the format of a VM's disks when it differs from the
	// VM's own (a .vmx has VMDK disks).
	DiskFormat string
}

// DiskFormatName is the format of the disks of a VM read in format f.
func (f *Format) DiskFormatName() string {
	if f.DiskFormat != "" {
		return f.DiskFormat
	}
	return f.Name
}

// VMStream is a VM read once from a pipe.
type VMStream interface {
	VM() *neutral.VM
	NextDisk() (id string, s disk.Stream, err error)
}

// IsVM reports whether the format describes whole VMs.
func (f *Format) IsVM() bool { return f.OpenVM != nil || f.WriteVM != nil }

// ImageInfo is what `info` prints of a disk image; field names follow
// `qemu-img info --output json` where they overlap.
type ImageInfo struct {
	Filename      string `json:"filename"`
	Format        string `json:"format"`
	Subformat     string `json:"subformat,omitempty"`
	VirtualSize   int64  `json:"virtual-size"`
	ActualSize    int64  `json:"actual-size"`
	AllocatedSize int64  `json:"allocated-size"`
	// DirtyFlag is qemu-img's: a qcow2 whose dirty bit says its refcounts
	// were not written back (lazy_refcounts, not closed cleanly).
	DirtyFlag       bool   `json:"dirty-flag"`
	ClusterSize     int64  `json:"cluster-size,omitempty"`
	BackingFilename string `json:"backing-filename,omitempty"`
	// BackingFormat and FullBackingFilename are qemu-img's: the backing
	// file's format as the image records it, and its path as opened.
	BackingFormat       string   `json:"backing-filename-format,omitempty"`
	FullBackingFilename string   `json:"full-backing-filename,omitempty"`
	BackingChain        []string `json:"backing-chain,omitempty"`
	Extents             []any    `json:"extents,omitempty"`
	FormatSpecific      any      `json:"format-specific,omitempty"`
	// Snapshots are a qcow2's internal snapshots, as qemu-img info lists them.
	Snapshots []qcow2.Snapshot `json:"snapshots,omitempty"`
	// Specific is the human output's "Format specific information", as
	// qemu-img prints it: name and value, in order.
	Specific [][2]string `json:"-"`
}

var registry []*Format

// Register adds a format; later registrations are tried after earlier ones.
func Register(f *Format) { registry = append(registry, f) }

// All returns the registered formats.
func All() []*Format { return registry }

// Lookup finds a format by name (as given to -f/-O).
func Lookup(name string) (*Format, error) {
	for _, f := range registry {
		if strings.EqualFold(f.Name, name) {
			return f, nil
		}
		for _, a := range f.Aliases {
			if strings.EqualFold(a, name) {
				return f, nil
			}
		}
	}
	names := make([]string, len(registry))
	for i, f := range registry {
		names[i] = f.Name
	}
	return nil, fmt.Errorf("unknown format %q (known: %s)", name, strings.Join(names, ", "))
}

// ByExtension finds the format a file name's extension names, or nil. The
// longest matching suffix wins (".vmb.tar" before ".tar").
func ByExtension(path string) *Format {
	name := strings.ToLower(filepath.Base(path))
	var best *Format
	bestLen := 0
	for _, f := range registry {
		for _, ext := range f.Exts {
			if strings.HasSuffix(name, ext) && len(ext) > bestLen {
				best, bestLen = f, len(ext)
			}
		}
	}
	return best
}

// headSize and tailSize are how much of a file's start and end detection
// reads.
const (
	headSize = 4096
	tailSize = 512
)

// Detect finds the format of an existing file or directory: magic at the
// start first, then magic at the end, then the extension, then raw for
// regular files.
func Detect(path string) (*Format, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		for _, f := range registry {
			if f.IsDir != nil && f.IsDir(path) {
				return f, nil
			}
		}
		return nil, fmt.Errorf("%s: a directory that is not a VM bundle", path)
	}
	return detectFile(path, fi.Size())
}

// detectFile detects the format of a file of size bytes by its content,
// then its name.
func detectFile(path string, size int64) (*Format, error) {
	fh, err := disk.OpenFile(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	head := make([]byte, headSize)
	n, err := io.ReadFull(fh, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: read the first %d bytes: %w", path, headSize, err)
	}
	if f := byMagic(head[:n]); f != nil {
		return f, nil
	}
	tail, err := readTail(fh, size)
	if err != nil {
		return nil, fmt.Errorf("%s: read the last %d bytes at %#x: %w", path, tailSize, max(0, size-tailSize), err)
	}
	for _, f := range registry {
		if f.TailMagic != nil && f.TailMagic(tail, size) {
			return f, nil
		}
	}
	if err := refuseForeign(path, head[:n], tail); err != nil {
		return nil, err
	}
	return byName(path)
}

func readTail(r io.ReaderAt, size int64) ([]byte, error) {
	tail := make([]byte, min(size, tailSize))
	if _, err := r.ReadAt(tail, size-int64(len(tail))); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return tail, nil
}

// DetectHead detects a format from a file's first bytes and its name, for
// input that has no end to look at (a pipe).
func DetectHead(path string, head []byte) (*Format, error) {
	if f := byMagic(head); f != nil {
		return f, nil
	}
	if err := refuseForeign(path, head, nil); err != nil {
		return nil, err
	}
	return byName(path)
}

func byMagic(head []byte) *Format {
	for _, f := range registry {
		if f.Magic != nil && f.Magic(head) {
			return f
		}
	}
	return nil
}

// byName is the format an extension names, else raw.
func byName(path string) (*Format, error) {
	if f := ByExtension(path); f != nil && f.Name != "raw" {
		return f, nil
	}
	return Lookup("raw")
}

// OpenVM opens path as a VM. A single disk image becomes a VM with one disk
// whose id is "disk0".
func OpenVM(path string, f *Format) (*neutral.VM, error) {
	if f.OpenVM != nil {
		return f.OpenVM(path)
	}
	if f.OpenImage == nil {
		return nil, fmt.Errorf("%s: format %s cannot be read", path, f.Name)
	}
	img, err := f.OpenImage(path)
	if err != nil {
		return nil, err
	}
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	return &neutral.VM{
		Schema:         neutral.Schema,
		Name:           name,
		Firmware:       "bios",
		CPUs:           1,
		CoresPerSocket: 1,
		MemoryMiB:      1024,
		Disks: []neutral.Disk{{
			ID: "disk0", Device: "disk", Bus: "virtio", CapacityBytes: img.Size(),
			Bootable: true, Image: img,
		}},
		NICs:   []neutral.NIC{},
		Source: &neutral.Source{Format: f.Name, File: path},
	}, nil
}
