package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats"
	"github.com/vmconv/vmconv/formats/neutral"
	"github.com/vmconv/vmconv/guest"
)

func newConvertCmd() *cobra.Command {
	var (
		inFmt, outFmt string
		optList       []string
		progress      bool
		force         bool
		store         string
		target        string
		noInspect     bool
	)
	cmd := &cobra.Command{
		Use:   "convert SRC DST",
		Short: "Convert a disk image or a whole VM to another format",
		Long: `Convert a disk image or a whole VM. Formats are detected from the source's
magic and the target's extension, or given with -f and -O. "-" is stdin or
stdout where the format streams. A snapshot chain converts to one flat image.

The guest is inspected first, as "vmconv inspect" does, for the target
hypervisor (--target; by default from DST's format: vmx/vmdk/ovf/ova are
vmware, xva/xl/vpc xen, the rest kvm), and each finding is printed on
stderr as a warning (not when SRC is stdin). Findings never fail a conversion.`,
		Args: argsRange(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, dst := args[0], args[1]
			opts, err := parseOpts(optList)
			if err != nil {
				return err
			}
			if store != "" {
				opts["store"] = store
			}
			dstFmt, err := targetFormat(dst, outFmt)
			if err != nil {
				return err
			}
			if err := notSameFile(src, dst); err != nil {
				return err
			}
			if target == "" {
				target = targetOf(dstFmt)
			}
			if _, ok := guest.Targets[target]; !ok {
				return usagef("--target: want %s, got %q", strings.Join(guest.TargetNames(), ", "), target)
			}
			// The guest is inspected first; findings are warnings only.
			warn := func(vm *neutral.VM, isVM bool) { warnInspect(cmd.ErrOrStderr(), src, vm, target, isVM) }
			if noInspect {
				warn = nil
			}
			prog, endProg := progressBar(cmd, progress, "convert")
			defer endProg()
			copyOpt := disk.CopyOptions{Progress: prog}
			out := disk.NewOutput(force)
			defer out.Abort()
			if src == "-" {
				err = convertStream(cmd.Context(), cmd, inFmt, dst, dstFmt, out, opts, copyOpt)
			} else {
				err = convertFile(cmd.Context(), src, inFmt, dst, dstFmt, out, opts, copyOpt, warn)
			}
			if err != nil {
				return err
			}
			return out.Commit()
		},
	}
	cmd.Flags().StringVarP(&inFmt, "format", "f", "", "format of SRC (detected when not given)")
	cmd.Flags().StringVarP(&outFmt, "output-format", "O", "", "format of DST (from its extension when not given, else raw)")
	cmd.Flags().StringArrayVarP(&optList, "options", "o", nil, "format options key=value[,key=value…] (e.g. subformat=streamOptimized)")
	cmd.Flags().BoolVarP(&progress, "progress", "p", false, "show a progress bar on stderr")
	cmd.Flags().BoolVar(&force, "force", false, "replace DST if it exists")
	cmd.Flags().StringVar(&target, "target", "", "hypervisor the guest is inspected for: kvm, xen or vmware (from DST's format when not given)")
	cmd.Flags().BoolVar(&noInspect, "no-inspect", false, "do not inspect the guest for problems on the target first")
	cmd.Flags().StringVar(&store, "store", "", "chunk store shared between bundles (vmb output): dedupes across VMs")
	return cmd
}

func targetFormat(dst, name string) (*formats.Format, error) {
	if name != "" {
		f, err := formats.Lookup(name)
		if err != nil {
			return nil, usageError{err}
		}
		return f, nil
	}
	if f := formats.ByExtension(dst); f != nil {
		return f, nil
	}
	return formats.Lookup("raw")
}

// notSameFile refuses to write over the input.
func notSameFile(src, dst string) error {
	if src == "-" || dst == "-" {
		return nil
	}
	a, err1 := os.Stat(src)
	b, err2 := os.Stat(dst)
	if err1 == nil && err2 == nil && os.SameFile(a, b) {
		return fmt.Errorf("%s: the target is the source; inputs are never changed", dst)
	}
	return nil
}

// convertFile converts a file; warn, when not nil, is given the source to
// inspect first (isVM: its firmware and MACs are the VM's).
func convertFile(ctx context.Context, src, inFmt, dst string, dstFmt *formats.Format, out *disk.Output, opts map[string]string, copyOpt disk.CopyOptions, warn func(vm *neutral.VM, isVM bool)) error {
	srcFmt, err := detectOrLookup(src, inFmt)
	if err != nil {
		return err
	}
	if dstFmt.WriteVM != nil && dstFmt.CreateImage == nil || srcFmt.IsVM() && dstFmt.WriteVM != nil {
		vm, err := formats.OpenVM(src, srcFmt)
		if err != nil {
			return err
		}
		defer vm.Close()
		if dstFmt.WriteVM == nil {
			return fmt.Errorf("format %s cannot be written", dstFmt.Name)
		}
		if warn != nil {
			// An image becomes a VM with BIOS firmware: what the target gets.
			warn(vm, true)
		}
		return dstFmt.WriteVM(ctx, out, dst, vm, opts, copyOpt)
	}
	if dstFmt.CreateImage == nil {
		return fmt.Errorf("format %s cannot be written", dstFmt.Name)
	}
	img, _, err := openImage(src, inFmt)
	if err != nil {
		return err
	}
	defer img.Close()
	if warn != nil {
		warn(&neutral.VM{Disks: []neutral.Disk{{Device: "disk", Image: img}}}, false)
	}
	return copyImage(ctx, img, dst, dstFmt, out, opts, copyOpt)
}

func copyImage(ctx context.Context, img disk.Image, dst string, dstFmt *formats.Format, out *disk.Output, opts map[string]string, copyOpt disk.CopyOptions) error {
	if dst == "-" && !dstFmt.StreamsOut {
		return usagef("format %s cannot be written to stdout", dstFmt.Name)
	}
	w, err := dstFmt.CreateImage(out, dst, img.Size(), opts)
	if err != nil {
		return err
	}
	if err := disk.Copy(ctx, img, w, copyOpt); err != nil {
		return fmt.Errorf("convert to %s: %w", dst, err)
	}
	return nil
}

// convertStream converts from stdin: a streamable disk format, or a VM
// format read in one pass.
func convertStream(ctx context.Context, cmd *cobra.Command, inFmt, dst string, dstFmt *formats.Format, out *disk.Output, opts map[string]string, copyOpt disk.CopyOptions) error {
	if inFmt == "" {
		return usagef("reading from stdin needs -f FORMAT")
	}
	srcFmt, err := formats.Lookup(inFmt)
	if err != nil {
		return usageError{err}
	}
	switch {
	case srcFmt.OpenStream != nil && dstFmt.CreateImage != nil:
		s, err := srcFmt.OpenStream(cmd.InOrStdin())
		if err != nil {
			return err
		}
		w, err := dstFmt.CreateImage(out, dst, s.Size(), opts)
		if err != nil {
			return err
		}
		return disk.CopyStream(ctx, s, w, copyOpt)
	case srcFmt.StreamVM != nil && dstFmt.CreateImage != nil:
		vs, err := srcFmt.StreamVM(cmd.InOrStdin())
		if err != nil {
			return err
		}
		if c, ok := vs.(io.Closer); ok {
			defer c.Close()
		}
		var disks []neutral.Disk
		for _, d := range vs.VM().Disks {
			if d.Device == "disk" {
				disks = append(disks, d)
			}
		}
		if len(disks) != 1 {
			return fmt.Errorf("stdin: a VM with %d disks cannot be written as one %s image", len(disks), dstFmt.Name)
		}
		_, s, err := vs.NextDisk()
		if err != nil {
			return err
		}
		w, err := dstFmt.CreateImage(out, dst, s.Size(), opts)
		if err != nil {
			return err
		}
		return disk.CopyStream(ctx, s, w, copyOpt)
	}
	return usagef("format %s cannot be converted from stdin to %s", srcFmt.Name, dstFmt.Name)
}
