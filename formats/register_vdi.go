package formats

import (
	"iter"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/vdi"
)

func init() {
	Register(&Format{
		Name:    "vdi",
		Options: vdi.OptionHelp,
		Exts:    []string{".vdi"},
		Magic:   vdi.Detect,
		OpenImage: func(path string) (disk.Image, error) {
			return vdi.Open(path)
		},
		CreateImage: func(out *disk.Output, path string, size int64, opts map[string]string) (disk.Writer, error) {
			o, err := vdi.ParseOptions(opts)
			if err != nil {
				return nil, err
			}
			return vdi.Create(out, path, size, o)
		},
		Check: vdi.Check,
		Measure: func(_ string, size int64, data iter.Seq[disk.Extent], opts map[string]string) (disk.Measurement, error) {
			o, err := vdi.ParseOptions(opts)
			if err != nil {
				return disk.Measurement{}, err
			}
			return vdi.Measure(size, data, o)
		},
		ImageInfo: func(img disk.Image) *ImageInfo {
			vi := img.(*vdi.Image).Info()
			return &ImageInfo{
				Subformat:      vi.Subformat,
				ActualSize:     vi.ActualSize,
				ClusterSize:    vi.BlockSize,
				FormatSpecific: map[string]any{"type": "vdi", "data": vi},
			}
		},
	})
}
