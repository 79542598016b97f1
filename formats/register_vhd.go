package formats

import (
	"iter"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/vhd"
)

func init() {
	Register(&Format{
		Name:    "vpc",
		Options: vhd.OptionHelp,
		Aliases: []string{"vhd"},
		// Dynamic and differencing disks start with the footer copy; fixed
		// ones have it only at the end.
		Exts:      []string{".vhd", ".vpc"},
		Magic:     vhd.Detect,
		TailMagic: vhd.DetectTail,
		OpenImage: func(path string) (disk.Image, error) {
			return vhd.Open(path)
		},
		CreateImage: func(out *disk.Output, path string, size int64, opts map[string]string) (disk.Writer, error) {
			o, err := vhd.ParseOptions(opts)
			if err != nil {
				return nil, err
			}
			return vhd.Create(out, path, size, o)
		},
		Check: vhd.Check,
		Measure: func(_ string, size int64, data iter.Seq[disk.Extent], opts map[string]string) (disk.Measurement, error) {
			o, err := vhd.ParseOptions(opts)
			if err != nil {
				return disk.Measurement{}, err
			}
			return vhd.Measure(size, data, o)
		},
		ImageInfo: func(img disk.Image) *ImageInfo {
			vi := img.(*vhd.Image).Info()
			return &ImageInfo{
				Subformat:       vi.Subformat,
				ActualSize:      vi.ActualSize,
				ClusterSize:     vi.BlockSize,
				BackingFilename: vi.BackingFile,
				BackingChain:    vi.Chain,
				FormatSpecific:  map[string]any{"type": "vpc", "data": vi},
			}
		},
	})
}
