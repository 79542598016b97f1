package formats

import (
	"fmt"
	"iter"
	"strings"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/vmdk"
)

func init() {
	Register(&Format{
		Name:     "vmdk",
		Options:  vmdk.OptionHelp,
		Compress: compressVMDK,
		Exts:     []string{".vmdk"},
		Magic:    vmdk.Detect,
		OpenImage: func(path string) (disk.Image, error) {
			return vmdk.Open(path)
		},
		CreateImage: func(out *disk.Output, path string, size int64, opts map[string]string) (disk.Writer, error) {
			o, err := vmdk.ParseOptions(opts)
			if err != nil {
				return nil, err
			}
			return vmdk.Create(out, path, size, o)
		},
		StreamsOut: true, // streamOptimized only; Create refuses the others
		OpenStream: vmdk.OpenStream,
		Check: func(path string) ([]disk.Problem, error) {
			res, err := vmdk.Check(path)
			if err != nil {
				return nil, err
			}
			return res.Problems, nil
		},
		Measure: func(path string, size int64, data iter.Seq[disk.Extent], opts map[string]string) (disk.Measurement, error) {
			o, err := vmdk.ParseOptions(opts)
			if err != nil {
				return disk.Measurement{}, err
			}
			return vmdk.Measure(path, size, data, o)
		},
		ImageInfo: func(img disk.Image) *ImageInfo {
			vi := img.(*vmdk.Image).Info()
			info := &ImageInfo{
				Subformat:       vi.CreateType,
				ActualSize:      vi.ActualSize,
				BackingFilename: vi.BackingFile,
				BackingChain:    vi.Chain,
				FormatSpecific:  map[string]any{"type": "vmdk", "data": vi},
			}
			if len(vi.Extents) > 0 {
				info.ClusterSize = vi.Extents[0].GrainSize
			}
			if vi.BackingFile != "" && len(vi.Chain) > 0 {
				// A VMDK's parent is a VMDK; qemu-img names its format so.
				info.BackingFormat, info.FullBackingFilename = "vmdk", vi.Chain[0]
			}
			for _, e := range vi.Extents {
				info.Extents = append(info.Extents, e)
			}
			return info
		},
	})
}

// compressVMDK: a compressed VMDK is streamOptimized.
func compressVMDK(opts map[string]string) (string, error) {
	if v, ok := opts["subformat"]; ok {
		if !strings.EqualFold(v, vmdk.StreamOptimized) {
			return "", fmt.Errorf("-c and -o subformat=%s: a compressed VMDK is streamOptimized", v)
		}
		return "", nil
	}
	return "subformat=" + vmdk.StreamOptimized, nil
}

// compressedAnyway is Compress for formats whose output is always compressed.
func compressedAnyway(map[string]string) (string, error) { return "", nil }
