package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats"
	"github.com/vmconv/vmconv/formats/neutral"
)

// detectOrLookup finds the format of path, or the named one when -f is given.
func detectOrLookup(path, name string) (*formats.Format, error) {
	if name != "" {
		f, err := formats.Lookup(name)
		if err != nil {
			return nil, usageError{err}
		}
		return f, nil
	}
	return formats.Detect(path)
}

// storeFlagUsage is the help of --store on the commands that read bundles.
const storeFlagUsage = "read a bundle's chunks from this store (directory, s3://BUCKET/PREFIX?… or file:///DIR) instead of the one it records"

// openVM opens a VM; a non-empty store replaces the chunk store a bundle
// records (--store), and is refused for other formats.
func openVM(path string, f *formats.Format, store string) (*neutral.VM, error) {
	if store == "" {
		return formats.OpenVM(path, f)
	}
	if err := storeApplies(path, f, store); err != nil {
		return nil, err
	}
	return neutral.OpenBundleStore(path, store)
}

// storeApplies refuses --store for an input that is not a bundle.
func storeApplies(path string, f *formats.Format, store string) error {
	if store != "" && f.Name != "vmb" {
		return usagef("--store applies to bundles (vmb); %s is %s", path, f.Name)
	}
	return nil
}

// openImage opens a single disk image (any disk format).
func openImage(path, fmtName string) (disk.Image, *formats.Format, error) {
	f, err := detectOrLookup(path, fmtName)
	if err != nil {
		return nil, nil, err
	}
	if f.OpenImage == nil {
		if f.IsVM() {
			vm, err := formats.OpenVM(path, f)
			if err != nil {
				return nil, nil, err
			}
			disks := diskImages(vm)
			if len(disks) != 1 {
				vm.Close()
				return nil, nil, fmt.Errorf("%s: a VM with %d disks; this command takes one disk", path, len(disks))
			}
			return disks[0].Image, f, nil
		}
		return nil, nil, fmt.Errorf("%s: format %s cannot be read", path, f.Name)
	}
	img, err := f.OpenImage(path)
	return img, f, err
}

// diskImages returns the VM's disks that have content.
func diskImages(vm *neutral.VM) []neutral.Disk {
	var out []neutral.Disk
	for _, d := range vm.Disks {
		if d.Image != nil {
			out = append(out, d)
		}
	}
	return out
}

// parseOpts parses "-o k=v,k2=v2" (repeatable) like qemu-img, where a key
// alone switches a setting on ("-o compat6" is "-o compat6=on").
func parseOpts(list []string) (map[string]string, error) {
	out := map[string]string{}
	for _, s := range list {
		for _, kv := range strings.Split(s, ",") {
			if kv == "" {
				continue
			}
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				v = "on"
			}
			if k == "" {
				return nil, usagef("option %q: want key=value", kv)
			}
			if _, dup := out[k]; dup {
				return nil, usagef("option %q given twice", k)
			}
			out[k] = v
		}
	}
	return out, nil
}

// progressBar returns a progress hook drawing a bar on stderr, and a function
// that ends it. Without -p both do nothing.
func progressBar(cmd *cobra.Command, show bool, label string) (func(done, total int64), func()) {
	if !show {
		return nil, func() {}
	}
	p := mpb.New(mpb.WithOutput(cmd.ErrOrStderr()), mpb.WithWidth(72), mpb.WithAutoRefresh(), mpb.WithRefreshRate(200*time.Millisecond))
	var bar *mpb.Bar
	return func(done, total int64) {
			if bar == nil {
				bar = p.AddBar(total,
					mpb.PrependDecorators(decor.Name(label+" "), decor.Percentage(decor.WCSyncSpace)),
					mpb.AppendDecorators(decor.Counters(decor.SizeB1024(0), "% .1f / % .1f"),
						decor.AverageSpeed(decor.SizeB1024(0), " % .1f", decor.WCSyncSpace)))
			}
			bar.SetCurrent(done)
		}, func() {
			if bar != nil {
				bar.SetCurrent(bar.Current())
				if !bar.Completed() {
					bar.Abort(false)
				}
			}
			p.Wait()
		}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ")
	return enc.Encode(v)
}

// actualSize is the space a file takes on the host.
func actualSize(path string) int64 {
	var total int64
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if st, ok := statBlocks(fi); ok {
		total += st
	} else {
		total += fi.Size()
	}
	return total
}

// checkOutput refuses an --output other than human or json.
func checkOutput(output string) error {
	if output != "human" && output != "json" {
		return usagef("--output: want human or json, got %q", output)
	}
	return nil
}
