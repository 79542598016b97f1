package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/fix"
	"github.com/vmconv/vmconv/formats"
	"github.com/vmconv/vmconv/formats/neutral"
	"github.com/vmconv/vmconv/guest"
	"github.com/vmconv/vmconv/vmm"
	"github.com/vmconv/vmconv/vmm/qemu"
	"github.com/vmconv/vmconv/vmm/verdict"
)

// fixFlags are the flags of `vmconv fix` and of `vmconv convert --fix`.
type fixFlags struct {
	engine     string
	memory     int64
	timeout    time.Duration
	output     string
	consoleLog string
}

func (f *fixFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.engine, "engine", "auto", "engine the fixer boots in: builtin, qemu or auto (as verify)")
	cmd.Flags().Int64Var(&f.memory, "memory", 0, "fixer memory in MiB (default: the VM's, at least 1024)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 15*time.Minute, "give up on the fixer after this long")
	cmd.Flags().StringVar(&f.consoleLog, "console-log", "", "write the fixer's whole console to this file")
}

const fixLong = `Fix what stops the guest booting on the target, into the output; the input
is never written. The guest is inspected as "vmconv inspect" does; for the
findings that have a fix, the guest's own kernel boots (in QEMU or vmconv's
machine, --engine as for verify) with a small initramfs whose /init is
vmconv, the guest's disks behind copy-on-write overlays. It mounts the
guest's root and:

  - names disks by UUID= instead of /dev/sdX in /etc/fstab, /etc/crypttab,
    GRUB's grub.cfg and /etc/default/grub, and the resume configuration;
  - adds the target's disk drivers to the initramfs and rebuilds it with
    the guest's own tool (update-initramfs, dracut);
  - gives the VM's NIC (by its MAC) the name the network configuration
    uses, with a systemd .link file;
  - disables the old hypervisor's tools (their systemd enablement links).

The overlays, fixed, are then converted to DST. What was fixed and what
was not is printed (--output json: one report).`

func newFixCmd() *cobra.Command {
	var (
		ff              fixFlags
		inFmt, outFmt   string
		optList         []string
		force, progress bool
		target          string
	)
	cmd := &cobra.Command{
		Use:   "fix SRC DST",
		Short: "Fix a guest for its new hypervisor into a copy (DST in SRC's format unless -O or its name says)",
		Long:  fixLong,
		Args:  filesOrOptionHelp(&optList),
		RunE: func(cmd *cobra.Command, args []string) error {
			if wantsOptionHelp(optList) {
				return printOptionHelp(cmd, args, outFmt)
			}
			if outFmt == "" && formats.ByExtension(args[1]) == nil {
				// DST's name does not say: SRC's format.
				f, err := detectOrLookup(args[0], inFmt)
				if err != nil {
					return err
				}
				outFmt = f.Name
			}
			return runFix(cmd, args[0], args[1], inFmt, outFmt, optList, force, progress, target, ff, "")
		},
	}
	ff.add(cmd)
	cmd.Flags().StringVar(&ff.output, "output", "human", "output format: human or json")
	cmd.Flags().StringVarP(&inFmt, "format", "f", "", "format of SRC (detected when not given)")
	cmd.Flags().StringVarP(&outFmt, "output-format", "O", "", "format of DST (default: from DST's extension, else SRC's)")
	cmd.Flags().StringArrayVarP(&optList, "options", "o", nil, "format options key=value[,key=value…]")
	cmd.Flags().BoolVar(&force, "force", false, "replace DST if it exists")
	cmd.Flags().BoolVarP(&progress, "progress", "p", false, "show a progress bar on stderr")
	cmd.Flags().StringVar(&target, "target", "kvm", "the hypervisor the guest goes to: "+strings.Join(guest.TargetNames(), ", "))
	return cmd
}

// fixReport is what `vmconv fix --output json` prints.
type fixReport struct {
	Source  string        `json:"source"`
	Output  string        `json:"output"`
	Target  string        `json:"target"`
	Engine  string        `json:"engine,omitempty"`
	Fixed   bool          `json:"fixed"` // the fixer ran and every step succeeded
	FixMS   int64         `json:"fix_ms"`
	Plan    *fix.Plan     `json:"plan,omitempty"`
	Results []fix.Result  `json:"results"`
	Unfixed []fix.Unfixed `json:"unfixed"`
	Error   string        `json:"error,omitempty"`
}

func runFix(cmd *cobra.Command, src, dst, inFmt, outFmt string, optList []string, force, progress bool, target string, ff fixFlags, store string) error {
	if err := checkOutput(ff.output); err != nil {
		return err
	}
	if _, ok := guest.Targets[target]; !ok {
		return usagef("--target: want %s, got %q", strings.Join(guest.TargetNames(), ", "), target)
	}
	eng, err := chooseEngine(ff.engine)
	if err != nil {
		return err
	}
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
	if src == "-" || dst == "-" {
		return usagef("fix reads and writes files, not stdin or stdout")
	}
	if err := notSameFile(src, dst); err != nil {
		return err
	}
	srcFmt, err := detectOrLookup(src, inFmt)
	if err != nil {
		return err
	}
	vm, err := formats.OpenVM(src, srcFmt)
	if err != nil {
		return err
	}
	defer vm.Close()
	var console io.Writer
	if ff.consoleLog != "" {
		lf, err := os.Create(ff.consoleLog)
		if err != nil {
			return err
		}
		defer lf.Close()
		console = lf
	}
	rep := &fixReport{Source: src, Output: dst, Target: target, Engine: eng, Results: []fix.Result{}, Unfixed: []fix.Unfixed{}}
	start := time.Now()
	out, ferr := fixVM(cmd.Context(), vm, srcFmt.IsVM(), target, eng, ff, console)
	rep.FixMS = time.Since(start).Milliseconds()
	if out != nil {
		defer out.Close()
		rep.Plan, rep.Results, rep.Unfixed = out.Plan, append(rep.Results, out.Results...), append(rep.Unfixed, out.Unfixed...)
	}
	if ferr != nil {
		rep.Error = ferr.Error()
		printFix(cmd.OutOrStdout(), ff.output, rep)
		return exitWith(cmd.ErrOrStderr(), ff.output, ferr)
	}
	rep.Fixed = len(out.Overlays) > 0
	prog, endProg := progressBar(cmd, progress, "convert")
	defer endProg()
	if err := writeFixed(cmd.Context(), vm, srcFmt, dstFmt, dst, out, opts, force, disk.CopyOptions{Progress: prog}); err != nil {
		rep.Error = err.Error()
		printFix(cmd.OutOrStdout(), ff.output, rep)
		return exitWith(cmd.ErrOrStderr(), ff.output, err)
	}
	printFix(cmd.OutOrStdout(), ff.output, rep)
	return nil
}

// fixTimeout bounds a fixer's run where no flag gives one (batch).
const fixTimeout = 15 * time.Minute

// fixPath is convert --fix without a command line, as batch runs it: the
// guest is fixed for the target DST's format implies, then written to DST.
// What was fixed is not printed; a failure is the error.
func fixPath(ctx context.Context, req convertRequest, ff fixFlags) error {
	dstFmt, err := targetFormat(req.dst, req.outFmt)
	if err != nil {
		return err
	}
	if err := notSameFile(req.src, req.dst); err != nil {
		return err
	}
	eng, err := chooseEngine(ff.engine)
	if err != nil {
		return err
	}
	srcFmt, err := detectOrLookup(req.src, req.inFmt)
	if err != nil {
		return err
	}
	vm, err := formats.OpenVM(req.src, srcFmt)
	if err != nil {
		return err
	}
	defer vm.Close()
	out, err := fixVM(ctx, vm, srcFmt.IsVM(), targetOf(dstFmt), eng, ff, nil)
	if out != nil {
		defer out.Close()
	}
	if err != nil {
		return fmt.Errorf("%s: fix: %w", req.src, err)
	}
	return writeFixed(ctx, vm, srcFmt, dstFmt, req.dst, out, req.opts, req.force, req.copy)
}

// exitWith returns err, or only its exit code when the JSON report
// already carries it.
func exitWith(stderr io.Writer, output string, err error) error {
	if output == "json" {
		fmt.Fprintf(stderr, "vmconv: %v\n", err)
		return exitError{1}
	}
	return err
}

// fixDisks are the VM's disks the fixer gets: those with content, no CD-ROMs.
func fixDisks(vm *neutral.VM) []int {
	var idx []int
	for i, d := range vm.Disks {
		if d.Image != nil && d.Device != "cdrom" {
			idx = append(idx, i)
		}
	}
	return idx
}

func fixVM(ctx context.Context, vm *neutral.VM, isVM bool, target, eng string, ff fixFlags, console io.Writer) (*fix.Outcome, error) {
	cfg := fix.Config{Target: target, Timeout: ff.timeout, Console: console, MemoryMiB: ff.memory}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = vm.MemoryMiB
	}
	for _, i := range fixDisks(vm) {
		cfg.Disks = append(cfg.Disks, vm.Disks[i].Image)
	}
	if isVM {
		for _, n := range vm.NICs {
			cfg.MACs = append(cfg.MACs, n.MAC)
		}
	}
	cfg.Boot = qemuFixBoot
	if eng == "builtin" {
		cfg.Boot = builtinFixBoot
	}
	return fix.Run(ctx, cfg)
}

func qemuFixBoot(ctx context.Context, req fix.BootRequest) (*verdict.Report, error) {
	cfg := qemu.Config{KernelData: req.Kernel, InitrdData: req.Initrd, Cmdline: req.Cmdline, CPUs: 1,
		MemoryMiB: req.MemoryMiB, Expect: req.Expect, Timeout: req.Timeout, Console: req.Console, Overlaid: true}
	for i, d := range req.Disks {
		cfg.Disks = append(cfg.Disks, qemu.Disk{ID: fmt.Sprint(i), Image: d})
	}
	return qemu.Verify(ctx, cfg)
}

func builtinFixBoot(ctx context.Context, req fix.BootRequest) (*verdict.Report, error) {
	cfg := vmm.Config{Kernel: req.Kernel, Initrd: req.Initrd, Cmdline: req.Cmdline, CPUs: 1,
		MemoryMiB: req.MemoryMiB, Expect: req.Expect, Timeout: req.Timeout, Console: req.Console, Overlaid: true}
	for i, d := range req.Disks {
		cfg.Disks = append(cfg.Disks, vmm.Disk{ID: fmt.Sprint(i), Image: d})
	}
	return vmm.Verify(ctx, cfg)
}

// writeFixed converts the VM, its disks replaced by the fixed overlays,
// through the normal writers.
func writeFixed(ctx context.Context, vm *neutral.VM, srcFmt, dstFmt *formats.Format, dst string, out *fix.Outcome, opts map[string]string, force bool, copyOpt disk.CopyOptions) error {
	for k, i := range fixDisks(vm) {
		if k < len(out.Overlays) {
			vm.Disks[i].Image = out.Overlays[k]
			vm.Disks[i].Digest = "" // the content changed
		}
	}
	o := disk.NewOutput(force)
	defer o.Abort()
	switch {
	case dstFmt.WriteVM != nil && (dstFmt.CreateImage == nil || srcFmt.IsVM()):
		if err := dstFmt.WriteVM(ctx, o, dst, vm, opts, copyOpt); err != nil {
			return err
		}
	case dstFmt.CreateImage != nil:
		disks := diskImages(vm)
		if len(disks) != 1 {
			return fmt.Errorf("%s: a VM with %d disks cannot be written as one %s image", dst, len(disks), dstFmt.Name)
		}
		if err := copyImage(ctx, disks[0].Image, dst, dstFmt, o, opts, copyOpt); err != nil {
			return err
		}
	default:
		return fmt.Errorf("format %s cannot be written", dstFmt.Name)
	}
	return o.Commit()
}

func printFix(w io.Writer, output string, r *fixReport) {
	if output == "json" {
		writeJSON(w, r)
		return
	}
	for _, res := range r.Results {
		state := "fixed"
		if !res.OK {
			state = "FAILED"
		}
		fmt.Fprintf(w, "%s %s (%d ms)", state, res.Step, res.MS)
		if res.Message != "" {
			fmt.Fprintf(w, ": %s", res.Message)
		}
		fmt.Fprintln(w)
		for _, c := range res.Changed {
			fmt.Fprintf(w, "    %s\n", c)
		}
		if !res.OK && res.Output != "" {
			fmt.Fprintf(w, "    output: %s\n", strings.ReplaceAll(strings.TrimSpace(res.Output), "\n", "\n    "))
		}
	}
	for _, u := range r.Unfixed {
		where := ""
		if u.Where != "" {
			where = " " + u.Where
		}
		fmt.Fprintf(w, "not fixed %s%s: %s\n", u.Code, where, u.Reason)
	}
	switch {
	case r.Error != "":
		fmt.Fprintf(w, "fix failed after %d ms: %s\n", r.FixMS, r.Error)
	case r.Fixed:
		fmt.Fprintf(w, "fixed in %d ms (engine %s); wrote %s\n", r.FixMS, r.Engine, r.Output)
	default:
		fmt.Fprintf(w, "nothing to fix; wrote %s\n", r.Output)
	}
}
