package formats

import (
	"fmt"
	"iter"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/createopt"
)

func init() {
	Register(&Format{
		Name: "raw",
		Exts: []string{".raw", ".img", ".bin"},
		OpenImage: func(path string) (disk.Image, error) {
			return disk.OpenRaw(path)
		},
		Options: rawOptions,
		CreateImage: func(out *disk.Output, path string, size int64, opts map[string]string) (disk.Writer, error) {
			p, err := parseRawOptions(opts)
			if err != nil {
				return nil, err
			}
			f, err := out.CreateDisk(path)
			if err != nil {
				return nil, err
			}
			w := disk.NewRawWriter(f, size)
			return w, w.Preallocate(p)
		},
		StreamsOut: true,
		// As qemu-img measures raw: the file is the disk's size (its holes
		// unallocated unless preallocated).
		Measure: func(_ string, size int64, _ iter.Seq[disk.Extent], opts map[string]string) (disk.Measurement, error) {
			if _, err := parseRawOptions(opts); err != nil {
				return disk.Measurement{}, err
			}
			return disk.Measurement{Required: size, FullyAllocated: size}, nil
		},
		ImageInfo: func(img disk.Image) *ImageInfo {
			return &ImageInfo{}
		},
	})
}

var rawOptions = []createopt.Help{
	{Name: "preallocation", Value: "<str>", Text: "how zeros take space in a file: off (holes, the default), falloc (blocks reserved with fallocate) or full (zeros written)"},
}

func parseRawOptions(opts map[string]string) (disk.Preallocation, error) {
	p := disk.PreallocOff
	for _, k := range createopt.Keys(opts) {
		if k != "preallocation" {
			return p, fmt.Errorf("raw: unknown option %q (known: %s)", k, createopt.Known(rawOptions))
		}
		switch opts[k] {
		case "off":
		case "falloc":
			p = disk.PreallocFalloc
		case "full":
			p = disk.PreallocFull
		default:
			return p, fmt.Errorf("raw option preallocation=%q: want off, falloc or full", opts[k])
		}
	}
	return p, nil
}
