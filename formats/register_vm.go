package formats

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/createopt"
	"github.com/vmconv/vmconv/formats/neutral"
	"github.com/vmconv/vmconv/formats/vmdk"
	"github.com/vmconv/vmconv/formats/vmx"
	"github.com/vmconv/vmconv/formats/xva"
)

func init() {
	Register(&Format{
		Name:    "xva",
		Options: xva.OptionHelp,
		// -c is xe vm-export's compress=true: gzip, which every xapi imports.
		Compress: func(opts map[string]string) (string, error) {
			if v, ok := opts["compress"]; ok {
				if o, err := xva.ParseOptions(map[string]string{"compress": v}); err == nil && o.Compress == "" {
					return "", fmt.Errorf("-c and -o compress=%s: choose one", v)
				}
				return "", nil
			}
			return "compress=" + xva.CompressGzip, nil
		},
		Exts:  []string{".xva"},
		Magic: xva.Detect,
		OpenVM: func(path string) (*neutral.VM, error) {
			vm, err := xva.Open(path)
			if errors.Is(err, xva.ErrCompressed) {
				return openCompressedXVA(path)
			}
			return vm, err
		},
		WriteVM: func(ctx context.Context, out *disk.Output, path string, vm *neutral.VM, opts map[string]string, copyOpt disk.CopyOptions) error {
			o, err := xva.ParseOptions(opts)
			if err != nil {
				return err
			}
			f, err := out.Create(path)
			if err != nil {
				return err
			}
			return xva.Write(ctx, f, vm, o, copyOpt)
		},
		StreamVM: func(r io.Reader) (VMStream, error) {
			return xva.NewStreamReader(r)
		},
		Check: xva.Check,
	})
	Register(&Format{
		Name:       "vmx",
		Options:    vmxOptions(),
		Compress:   compressVMDK,
		Exts:       []string{".vmx"},
		DiskFormat: "vmdk",
		Magic:      vmx.Detect,
		OpenVM: func(path string) (*neutral.VM, error) {
			return vmx.Read(path, openVMDK)
		},
		DescribeVM: func(path string) (*neutral.VM, error) {
			return vmx.ReadWith(path, openVMDK, vmx.ReadOptions{MarkMissing: true, Capacity: vmdk.Capacity})
		},
		WriteVM: func(ctx context.Context, out *disk.Output, path string, vm *neutral.VM, opts map[string]string, copyOpt disk.CopyOptions) error {
			var wo vmx.WriteOptions
			if v, ok := opts["hwversion"]; ok {
				n, err := strconv.Atoi(v)
				if err != nil || n < 3 || n > 99 {
					return fmt.Errorf("option hwversion=%q: want a virtual hardware version number", v)
				}
				wo.HWVersion = n
			}
			vo, err := vmdk.ParseOptions(opts)
			if err != nil {
				return err
			}
			_, forced := opts["adapter_type"]
			// Each disk's ddb.adapterType follows its controller unless
			// -o adapter_type= forces one.
			wo.NewDiskAdapter = func(out *disk.Output, path string, size int64, adapter string) (disk.Writer, error) {
				o := vo
				if !forced {
					o.AdapterType = adapter
				}
				return vmdk.Create(out, path, size, o)
			}
			return vmx.WriteWith(ctx, out, path, vm, nil, copyOpt, wo)
		},
	})
	Register(&Format{
		Name:     "vmb",
		Options:  bundleOptions,
		Compress: compressedAnyway, // zstd chunks
		Exts:     []string{".vmb", ".vmb.tar"},
		IsDir:    neutral.Detect,
		OpenVM: func(path string) (*neutral.VM, error) {
			return neutral.OpenBundle(path)
		},
		WriteVM: func(ctx context.Context, out *disk.Output, path string, vm *neutral.VM, opts map[string]string, copyOpt disk.CopyOptions) error {
			bo := neutral.BundleOptions{Copy: copyOpt}
			for k, v := range opts {
				switch k {
				case "store":
					bo.Store = v
				case "level":
					n, err := strconv.Atoi(v)
					if err != nil || n < 1 || n > 4 {
						return fmt.Errorf("option level=%q: want 1 (fastest) to 4 (best)", v)
					}
					bo.Level = zstd.EncoderLevel(n)
				default:
					return fmt.Errorf("vmb: unknown option %q (known: %s)", k, createopt.Known(bundleOptions))
				}
			}
			return neutral.WriteBundle(ctx, out, path, vm, bo)
		},
	})
}

func openVMDK(path string) (disk.Image, error) { return vmdk.Open(path) }

// openCompressedXVA decompresses a gzip- or zstd-compressed export into an
// unlinked temporary file and indexes that for random access.
func openCompressedXVA(path string) (*neutral.VM, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return spoolXVA(f, path)
}

// spoolXVA copies an XVA (compressed or not) read once from r into an
// unlinked temporary file and opens it.
func spoolXVA(r io.Reader, name string) (*neutral.VM, error) {
	var head [4]byte
	br := newPeekReader(r)
	n, _ := io.ReadFull(br, head[:])
	br.unread(head[:n])
	var src io.Reader = br
	switch {
	case n == 4 && head[0] == 0x1f && head[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("xva %s: gzip: %w", name, err)
		}
		defer zr.Close()
		src = zr
	case n == 4 && string(head[:]) == "\x28\xb5\x2f\xfd":
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			return nil, fmt.Errorf("xva %s: zstd: %w", name, err)
		}
		defer zr.Close()
		src = zr
	}
	tmp, err := os.CreateTemp("", "vmconv-xva-*.xva")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := io.Copy(tmp, src); err != nil {
		return nil, fmt.Errorf("xva %s: decompress: %w", name, err)
	}
	vm, err := xva.Open(tmp.Name())
	if err != nil {
		return nil, err
	}
	if vm.Source != nil {
		vm.Source.File = name
	}
	return vm, nil
}

// peekReader lets a few bytes be pushed back.
type peekReader struct {
	r    io.Reader
	back []byte
}

func newPeekReader(r io.Reader) *peekReader { return &peekReader{r: r} }

func (p *peekReader) unread(b []byte) { p.back = append(append([]byte(nil), b...), p.back...) }

func (p *peekReader) Read(b []byte) (int, error) {
	if len(p.back) > 0 {
		n := copy(b, p.back)
		p.back = p.back[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// vmxOptions are the VMDK writer's settings, hwversion setting the .vmx's
// virtualHW.version too.
func vmxOptions() []createopt.Help {
	out := append([]createopt.Help(nil), vmdk.OptionHelp...)
	for i := range out {
		if out[i].Name == "hwversion" {
			out[i].Value = "<num>"
			out[i].Text = fmt.Sprintf("virtual hardware version of the .vmx when the source is not from VMware (default %d; a VMware source keeps its own), and of its disks", vmx.DefaultHWVersion)
		}
	}
	return out
}

// bundleOptions are the settings of the bundle writer.
var bundleOptions = []createopt.Help{
	{Name: "level", Value: "<num>", Text: "zstd level of the chunks, 1 (fastest) to 4 (best)"},
	{Name: "store", Value: "<str>", Text: "chunk store shared between bundles (as --store): a directory, file:// or s3:// URL"},
}
