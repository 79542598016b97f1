package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats"
	"github.com/vmconv/vmconv/formats/createopt"
	"github.com/vmconv/vmconv/formats/neutral"
	"github.com/vmconv/vmconv/guest"
)

func newConvertCmd() *cobra.Command {
	var (
		inFmt, outFmt string
		snapshot      string
		optList       []string
		progress      bool
		force         bool
		store         string
		target        string
		output        string
		noInspect     bool
		fixOn         bool
		compress      bool
		ff            fixFlags
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
		Args: filesOrOptionHelp(&optList),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := parseOpts(optList)
			if err != nil {
				return err
			}
			if createopt.IsHelp(opts) {
				return printOptionHelp(cmd, args, outFmt)
			}
			src, dst := args[0], args[1]
			if store != "" {
				opts["store"] = store
			}
			dstFmt, err := targetFormat(dst, outFmt)
			if err != nil {
				return err
			}
			if compress {
				if dstFmt.Compress == nil {
					return fmt.Errorf("%s: compression is not supported for this format", dstFmt.Name)
				}
				kv, err := dstFmt.Compress(opts)
				if err != nil {
					return usageError{err}
				}
				if k, v, ok := strings.Cut(kv, "="); ok {
					opts[k] = v
					optList = append(optList, kv)
				}
			}
			if target == "" {
				target = targetOf(dstFmt)
			}
			if _, ok := guest.Targets[target]; !ok {
				return usagef("--target: want %s, got %q", strings.Join(guest.TargetNames(), ", "), target)
			}
			if fixOn {
				if snapshot != "" {
					return usagef("--snapshot and --fix: convert the snapshot first, then fix the copy")
				}
				ff.output = output
				return runFix(cmd, src, dst, inFmt, dstFmt.Name, optList, force, progress, target, ff, store)
			}
			prog, endProg := progressBar(cmd, progress, "convert")
			defer endProg()
			req := convertRequest{src: src, inFmt: inFmt, dst: dst, outFmt: outFmt, opts: opts, force: force,
				snapshot: snapshot, copy: disk.CopyOptions{Progress: prog}}
			if !noInspect {
				// The guest is inspected first; findings are warnings only.
				req.warn = func(vm *neutral.VM, isVM bool) { warnInspect(cmd.ErrOrStderr(), src, vm, target, isVM) }
			}
			if src == "-" {
				if snapshot != "" {
					return usagef("--snapshot: standard input has no snapshots")
				}
				return convertStdin(cmd, req)
			}
			return convertPath(cmd.Context(), req)
		},
	}
	cmd.Flags().StringVarP(&inFmt, "format", "f", "", "format of SRC (detected when not given)")
	cmd.Flags().StringVarP(&outFmt, "output-format", "O", "", "format of DST (from its extension when not given, else raw)")
	cmd.Flags().StringArrayVarP(&optList, "options", "o", nil, "format options key=value[,key=value…] (e.g. subformat=streamOptimized)")
	cmd.Flags().BoolVarP(&progress, "progress", "p", false, "show a progress bar on stderr")
	cmd.Flags().StringVarP(&snapshot, "snapshot", "l", "", "convert SRC's internal snapshot (qcow2): snapshot.id=ID, snapshot.name=NAME or an ID or name, as qemu-img convert -l")
	cmd.Flags().BoolVarP(&compress, "compress", "c", false, "compress DST's data (qcow2: compress=on; vmdk, vmx: subformat=streamOptimized)")
	cmd.Flags().BoolVar(&force, "force", false, "replace DST if it exists")
	cmd.Flags().StringVar(&target, "target", "", "hypervisor the guest is inspected for: kvm, xen or vmware (from DST's format when not given)")
	cmd.Flags().BoolVar(&noInspect, "no-inspect", false, "do not inspect the guest for problems on the target first")
	cmd.Flags().BoolVar(&fixOn, "fix", false, "fix what stops the guest booting on the target into DST (see vmconv fix)")
	cmd.Flags().StringVar(&output, "output", "human", "with --fix: output format, human or json")
	ff.add(cmd)
	cmd.Flags().StringVar(&store, "store", "", "chunk store shared between bundles (vmb output): dedupes across VMs")
	return cmd
}

// convertRequest is one conversion, as convert and batch run it.
type convertRequest struct {
	src, inFmt, dst, outFmt string
	snapshot                string // internal snapshot of SRC to convert (-l)
	opts                    map[string]string
	force                   bool
	copy                    disk.CopyOptions
	// read, when set, counts the bytes read from the source's disks.
	read *atomic.Int64
	// warn, when set, is given the source to inspect before it is
	// converted (isVM: its firmware and MACs are the VM's).
	warn func(vm *neutral.VM, isVM bool)
}

// convertPath converts a file or directory and commits the output: the one
// code path of `vmconv convert SRC DST` and of every VM of `vmconv batch`.
func convertPath(ctx context.Context, req convertRequest) error {
	dstFmt, err := targetFormat(req.dst, req.outFmt)
	if err != nil {
		return err
	}
	if err := notSameFile(req.src, req.dst); err != nil {
		return err
	}
	out := disk.NewOutput(req.force)
	defer out.Abort()
	if err := convertFile(ctx, req, dstFmt, out); err != nil {
		return err
	}
	return out.Commit()
}

// convertStdin converts what stdin streams.
func convertStdin(cmd *cobra.Command, req convertRequest) error {
	dstFmt, err := targetFormat(req.dst, req.outFmt)
	if err != nil {
		return err
	}
	out := disk.NewOutput(req.force)
	defer out.Abort()
	if err := convertStream(cmd.Context(), cmd, req.inFmt, req.dst, dstFmt, out, req.opts, req.copy); err != nil {
		return err
	}
	return out.Commit()
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

// filesOrOptionHelp checks the arguments of a command taking SRC DST, which
// "-O FMT -o help" does without.
func filesOrOptionHelp(optList *[]string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if wantsOptionHelp(*optList) {
			return argsRange(0, 2)(cmd, args)
		}
		return argsRange(2, 2)(cmd, args)
	}
}

// wantsOptionHelp reports whether -o asks for the settings (help or ?).
func wantsOptionHelp(optList []string) bool {
	opts, err := parseOpts(optList)
	return err == nil && createopt.IsHelp(opts)
}

// printOptionHelp answers "-o help": the settings of the format that -O
// names, or else DST's.
func printOptionHelp(cmd *cobra.Command, args []string, outFmt string) error {
	if outFmt == "" && len(args) < 2 {
		return usagef("-o help: name the output format with -O FMT (or give SRC and DST)")
	}
	dst := ""
	if len(args) == 2 {
		dst = args[1]
	}
	f, err := targetFormat(dst, outFmt)
	if err != nil {
		return err
	}
	if f.CreateImage == nil && f.WriteVM == nil {
		return usagef("-o help: %s cannot be written", f.Name)
	}
	createopt.PrintHelp(cmd.OutOrStdout(), f.Name, f.Options)
	return nil
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

func convertFile(ctx context.Context, req convertRequest, dstFmt *formats.Format, out *disk.Output) error {
	src, dst, opts, copyOpt := req.src, req.dst, req.opts, req.copy
	srcFmt, err := detectOrLookup(src, req.inFmt)
	if err != nil {
		return err
	}
	if req.snapshot != "" && srcFmt.OpenSnapshot == nil {
		return usagef("--snapshot: %s is %s, which has no internal snapshots (qcow2 has)", src, srcFmt.Name)
	}
	if dstFmt.WriteVM != nil && dstFmt.CreateImage == nil || srcFmt.IsVM() && dstFmt.WriteVM != nil {
		if req.snapshot != "" {
			return usagef("--snapshot: converts to a disk image format, not %s", dstFmt.Name)
		}
		vm, err := formats.OpenVM(src, srcFmt)
		if err != nil {
			return err
		}
		defer vm.Close()
		if dstFmt.WriteVM == nil {
			return fmt.Errorf("format %s cannot be written", dstFmt.Name)
		}
		if req.warn != nil {
			defer aside(func() { req.warn(vm, true) })()
		}
		if req.read != nil {
			for i := range vm.Disks {
				if vm.Disks[i].Image != nil {
					vm.Disks[i].Image = countingImage{vm.Disks[i].Image, req.read}
				}
			}
		}
		return dstFmt.WriteVM(ctx, out, dst, vm, opts, copyOpt)
	}
	if dstFmt.CreateImage == nil {
		return fmt.Errorf("format %s cannot be written", dstFmt.Name)
	}
	var img disk.Image
	if req.snapshot != "" {
		img, err = srcFmt.OpenSnapshot(src, req.snapshot)
	} else {
		img, _, err = openImage(src, req.inFmt)
	}
	if err != nil {
		return err
	}
	defer img.Close()
	if req.warn != nil {
		// An image becomes a VM with BIOS firmware: what the target gets.
		vm := &neutral.VM{Disks: []neutral.Disk{{Device: "disk", Image: img}}}
		defer aside(func() { req.warn(vm, false) })()
	}
	if req.read != nil {
		img = countingImage{img, req.read}
	}
	return copyImage(ctx, img, dst, dstFmt, out, opts, copyOpt)
}

// aside runs f beside the conversion and returns the wait for it. The
// inspection only reads the source (whose ReadAt serves concurrent callers,
// as the copy's workers are) and prints warnings, so it need not hold up
// the copy: on the Debian guest it unpacks the initramfs (0.17 s alone),
// and VMX -> XVA went from 0.54 to 0.46 s beside it. Deferred before the
// source is closed, the wait keeps the source open until f is done.
// A panic in f is raised again by wait, on the caller's goroutine, where
// run turns it into an error.
func aside(f func()) (wait func()) {
	done := make(chan struct{})
	var panicked any
	go func() {
		defer close(done)
		defer func() { panicked = recover() }()
		f()
	}()
	return func() {
		<-done
		if panicked != nil {
			panic(panicked)
		}
	}
}

// countingImage counts the bytes read through it.
type countingImage struct {
	disk.Image
	n *atomic.Int64
}

func (c countingImage) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.Image.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
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
