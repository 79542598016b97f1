package formats

import (
	"fmt"
	"iter"
	"strconv"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/createopt"
	"github.com/vmconv/vmconv/formats/qcow2"
)

// openBacking opens a backing file of a differencing image in any
// registered format: the one the image names, or the one detected.
func openBacking(path, format string) (disk.Image, error) {
	var f *Format
	var err error
	if format != "" {
		f, err = Lookup(format)
	} else {
		f, err = Detect(path)
	}
	if err != nil {
		return nil, err
	}
	if f.OpenImage == nil {
		return nil, fmt.Errorf("%s: format %s is not a disk image", path, f.Name)
	}
	return f.OpenImage(path)
}

// qcow2Specific is info's "Format specific information", in qemu-img's
// order: the data file lines, when there is one, after the refcount bits.
func qcow2Specific(qi qcow2.Info) [][2]string {
	s := [][2]string{
		{"compat", qi.Compat},
		{"compression type", qi.CompressionType},
		{"lazy refcounts", strconv.FormatBool(qi.LazyRefcounts)},
		{"refcount bits", strconv.Itoa(qi.RefcountBits)},
	}
	if qi.DataFile != "" {
		s = append(s, [2]string{"data file", qi.DataFile}, [2]string{"data file raw", strconv.FormatBool(qi.DataFileRaw)})
	}
	return append(s, [2]string{"corrupt", strconv.FormatBool(qi.Corrupt)}, [2]string{"extended l2", strconv.FormatBool(qi.ExtendedL2)})
}

func init() {
	Register(&Format{
		Name:    "qcow2",
		Options: qcow2.OptionHelp,
		Compress: func(opts map[string]string) (string, error) {
			for _, k := range []string{"compress", "c"} {
				if v, ok := opts[k]; ok {
					if on, err := createopt.Bool(v); err == nil && !on {
						return "", fmt.Errorf("-c and -o %s=%s: choose one", k, v)
					}
					return "", nil
				}
			}
			return "compress=on", nil
		},
		Exts:  []string{".qcow2", ".qcow"},
		Magic: qcow2.Detect,
		OpenImage: func(path string) (disk.Image, error) {
			return qcow2.OpenWith(path, qcow2.OpenOptions{OpenBacking: openBacking})
		},
		OpenSnapshot: func(path, snapshot string) (disk.Image, error) {
			return qcow2.OpenWith(path, qcow2.OpenOptions{OpenBacking: openBacking, Snapshot: snapshot})
		},
		CreateImage: func(out *disk.Output, path string, size int64, opts map[string]string) (disk.Writer, error) {
			o, err := qcow2.ParseOptions(opts)
			if err != nil {
				return nil, err
			}
			return qcow2.Create(out, path, size, o)
		},
		Check: func(path string) ([]disk.Problem, error) {
			res, err := qcow2.Check(path)
			if err != nil {
				return nil, err
			}
			return res.Problems, nil
		},
		Measure: func(_ string, size int64, data iter.Seq[disk.Extent], opts map[string]string) (disk.Measurement, error) {
			o, err := qcow2.ParseOptions(opts)
			if err != nil {
				return disk.Measurement{}, err
			}
			return qcow2.Measure(size, data, o)
		},
		ImageInfo: func(img disk.Image) *ImageInfo {
			qimg := img.(*qcow2.Image)
			qi := qimg.Info()
			return &ImageInfo{
				ActualSize:          qi.ActualSize,
				ClusterSize:         qi.ClusterSize,
				DirtyFlag:           qi.Dirty,
				BackingFilename:     qi.BackingFile,
				BackingFormat:       qi.BackingFormat,
				FullBackingFilename: qi.FullBackingFile,
				BackingChain:        qi.Chain,
				FormatSpecific:      map[string]any{"type": "qcow2", "data": qi},
				Snapshots:           qimg.Snapshots(),
				Specific:            qcow2Specific(qi),
			}
		},
	})
}
