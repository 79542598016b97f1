package formats

import (
	"fmt"
	"iter"
	"os"

	"github.com/vmconv/vmconv/disk"
)

func init() {
	Register(&Format{
		Name: "raw",
		Exts: []string{".raw", ".img", ".bin"},
		OpenImage: func(path string) (disk.Image, error) {
			return disk.OpenRaw(path)
		},
		CreateImage: func(out *disk.Output, path string, size int64, opts map[string]string) (disk.Writer, error) {
			for k := range opts {
				return nil, fmt.Errorf("raw: unknown option %q", k)
			}
			f, err := out.CreateDisk(path)
			if err != nil {
				return nil, err
			}
			return disk.NewRawWriter(f, size), nil
		},
		StreamsOut: true,
		// As qemu-img measures raw: the file is the disk's size, its
		// holes unallocated.
		Measure: func(_ string, size int64, _ iter.Seq[disk.Extent], opts map[string]string) (disk.Measurement, error) {
			for k := range opts {
				return disk.Measurement{}, fmt.Errorf("raw: unknown option %q", k)
			}
			return disk.Measurement{Required: size, FullyAllocated: size}, nil
		},
		ImageInfo: func(img disk.Image) *ImageInfo {
			return &ImageInfo{}
		},
	})
	_ = os.Stdout
}
