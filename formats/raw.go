package formats

import (
	"fmt"
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
		ImageInfo: func(img disk.Image) *ImageInfo {
			return &ImageInfo{}
		},
	})
	_ = os.Stdout
}
