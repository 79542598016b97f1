package formats

import (
	"iter"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/vhdx"
)

func init() {
	Register(&Format{
		Name:    "vhdx",
		Options: vhdx.OptionHelp,
		Exts:    []string{".vhdx"},
		Magic:   vhdx.Detect,
		OpenImage: func(path string) (disk.Image, error) {
			return vhdx.Open(path)
		},
		CreateImage: func(out *disk.Output, path string, size int64, opts map[string]string) (disk.Writer, error) {
			o, err := vhdx.ParseOptions(opts)
			if err != nil {
				return nil, err
			}
			return vhdx.Create(out, path, size, o)
		},
		Check: vhdx.Check,
		Measure: func(_ string, size int64, data iter.Seq[disk.Extent], opts map[string]string) (disk.Measurement, error) {
			o, err := vhdx.ParseOptions(opts)
			if err != nil {
				return disk.Measurement{}, err
			}
			return vhdx.Measure(size, data, o)
		},
		ImageInfo: func(img disk.Image) *ImageInfo {
			vi := img.(*vhdx.Image).Info()
			return &ImageInfo{
				ActualSize:     vi.ActualSize,
				ClusterSize:    vi.BlockSize,
				FormatSpecific: map[string]any{"type": "vhdx", "data": vi},
			}
		},
	})
}
