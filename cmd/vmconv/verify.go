package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmconv/vmconv/boot"
	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats"
	"github.com/vmconv/vmconv/formats/neutral"
	"github.com/vmconv/vmconv/guest"
	"github.com/vmconv/vmconv/vmm/host"
	"github.com/vmconv/vmconv/vmm/qemu"
	"github.com/vmconv/vmconv/vmm/verdict"
)

// bootSpec is what a boot needs, from flags or from the guest's disk.
type bootSpec struct {
	kernelName     string
	kernel, initrd []byte
	cmdline        string
}

// bootFlags are the flags verify and boot share.
type bootFlags struct {
	kernel, initrd, appendLine string
	cpus                       int
	memory                     int64
	fmtName                    string
	store                      string
}

func (f *bootFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.kernel, "kernel", "", "kernel to boot (bzImage or vmlinux); default: the one the guest's disk boots")
	cmd.Flags().StringVar(&f.initrd, "initrd", "", "initrd to boot with --kernel")
	cmd.Flags().StringVar(&f.appendLine, "append", "", "kernel command line (with --kernel; default console=ttyS0 root=/dev/vda1 ro)")
	cmd.Flags().IntVar(&f.cpus, "cpus", 0, "vCPUs (default: the VM's, capped at the host's cores)")
	cmd.Flags().Int64Var(&f.memory, "memory", 0, "memory in MiB (default: the VM's)")
	cmd.Flags().StringVarP(&f.fmtName, "format", "f", "", "format of the input (detected when not given)")
	cmd.Flags().StringVar(&f.store, "store", "", storeFlagUsage)
}

// resolve finds the kernel, initrd and command line: from the flags, or from
// the VM's own boot disk as its boot loader would.
func (f *bootFlags) resolve(vm *neutral.VM) (*bootSpec, error) {
	n := len(diskImages(vm))
	if f.kernel != "" {
		k, err := readBounded(f.kernel, boot.MaxKernelSize)
		if err != nil {
			return nil, err
		}
		spec := &bootSpec{kernelName: f.kernel, kernel: k}
		if f.initrd != "" {
			if spec.initrd, err = readBounded(f.initrd, boot.MaxInitrdSize); err != nil {
				return nil, err
			}
		}
		line := f.appendLine
		if line == "" {
			line = "root=/dev/vda1 ro"
		}
		spec.cmdline = boot.AdjustCmdline(line, n)
		return spec, nil
	}
	if f.initrd != "" {
		return nil, usagef("--initrd needs --kernel")
	}
	var imgs []disk.Image
	for _, d := range diskImages(vm) {
		imgs = append(imgs, d.Image)
	}
	e, err := boot.Find(imgs)
	if err != nil {
		return nil, err
	}
	spec := &bootSpec{kernelName: e.KernelPath, kernel: e.Kernel, initrd: e.Initrd, cmdline: e.AdjustedCmdline}
	if f.appendLine != "" {
		spec.cmdline = boot.AdjustCmdline(f.appendLine, n)
	}
	return spec, nil
}

func readBounded(path string, limit int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d MiB", path, limit>>20)
	}
	return b, nil
}

func (f *bootFlags) cpusFor(vm *neutral.VM) int {
	if f.cpus > 0 {
		return f.cpus
	}
	return max(vm.CPUs, 1)
}

func (f *bootFlags) memoryFor(vm *neutral.VM) int64 {
	if f.memory > 0 {
		return f.memory
	}
	if vm.MemoryMiB > 0 {
		return vm.MemoryMiB
	}
	return 512
}

// openVMArg opens the VM or image a boot command names.
func openVMArg(path, fmtName, store string) (*neutral.VM, *formats.Format, error) {
	f, err := detectOrLookup(path, fmtName)
	if err != nil {
		return nil, nil, err
	}
	vm, err := openVM(path, f, store)
	if err != nil {
		return nil, nil, err
	}
	if len(diskImages(vm)) == 0 {
		vm.Close()
		return nil, nil, fmt.Errorf("%s: the VM has no disk with content", path)
	}
	return vm, f, nil
}

func newVerifyCmd() *cobra.Command {
	var (
		bf         bootFlags
		expect     string
		timeout    time.Duration
		output     string
		consoleLog string
		engine     string
		nics       bool
	)
	cmd := &cobra.Command{
		Use:   "verify VM|IMAGE",
		Short: "Boot a VM and say whether it reaches its login prompt (exit 0 pass, 1 fail)",
		Long: `Boot the VM (any format) with its disks behind a copy-on-write overlay, watch
its serial console and decide: pass when the expected marker appears (default: a
login prompt or systemd reaching its default target), fail on a kernel panic, a
root that cannot be mounted, an emergency shell, a reset before the marker, a
guest fault, or the timeout. Without --kernel the guest's own boot loader
configuration decides what boots.

Engines: builtin (vmconv's own KVM machine), qemu (qemu-system-x86_64 with the
disks served by vmconv over NBD), auto (builtin where the host has hardware
virtualization, else qemu when installed).`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			var expectRE *regexp.Regexp
			if expect != "" {
				re, err := regexp.Compile(expect)
				if err != nil {
					return usagef("--expect: %v", err)
				}
				expectRE = re
			}
			if _, err := chooseEngine(engine); err != nil {
				return err // before the console log is created
			}
			var console io.Writer
			if consoleLog != "" {
				lf, err := os.Create(consoleLog)
				if err != nil {
					return err
				}
				defer lf.Close()
				console = lf
			}
			rep, err := verifyPath(cmd.Context(), args[0], verifyRequest{boot: bf, expect: expectRE, timeout: timeout, engine: engine, console: console, nics: nics})
			if err != nil {
				return err
			}
			if output == "json" {
				if err := writeJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (engine %s, host %s, %d ms)\n", rep.Result, rep.Reason, rep.Engine, rep.Host, rep.BootMS)
				if rep.Marker != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "marker: %s\n", rep.Marker)
				}
				for _, f := range rep.Findings {
					where := f.File
					if f.Line > 0 {
						where = fmt.Sprintf("%s:%d", f.File, f.Line)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "why: %s: %s: %s\n    fix: %s\n", f.Code, where, f.Message, f.Fix)
				}
			}
			if rep.Result != verdict.Pass {
				return exitError{1}
			}
			return nil
		},
	}
	bf.add(cmd)
	cmd.Flags().StringVar(&expect, "expect", "", "regular expression that marks success on the console")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up after this long")
	cmd.Flags().StringVar(&output, "output", "human", "output format: human or json")
	cmd.Flags().StringVar(&consoleLog, "console-log", "", "write the whole console to this file")
	cmd.Flags().StringVar(&engine, "engine", "auto", "builtin, qemu or auto")
	cmd.Flags().BoolVar(&nics, "nics", false, "attach the VM's NICs (its MACs) as virtio-net on a network that reaches nothing outside (engine qemu)")
	return cmd
}

// verifyRequest is one boot verification, as verify and batch run it.
type verifyRequest struct {
	boot    bootFlags
	expect  *regexp.Regexp
	timeout time.Duration
	engine  string
	console io.Writer
	// nics attaches the VM's NICs (qemu engine only).
	nics bool
}

// verifyPath boots the VM at path and returns the verdict: the one code
// path of `vmconv verify` and of every verified VM of `vmconv batch`.
func verifyPath(ctx context.Context, path string, req verifyRequest) (*verdict.Report, error) {
	eng, err := chooseEngine(req.engine)
	if err != nil {
		return nil, err
	}
	vm, f, err := openVMArg(path, req.boot.fmtName, req.boot.store)
	if err != nil {
		return nil, err
	}
	defer vm.Close()
	spec, err := req.boot.resolve(vm)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cpus, mem := req.boot.cpusFor(vm), req.boot.memoryFor(vm)
	var rep *verdict.Report
	if eng == "qemu" {
		var macs []string
		for _, n := range vm.NICs {
			if req.nics && n.MAC != "" {
				macs = append(macs, n.MAC)
			}
		}
		rep, err = qemuVerify(ctx, vm, f, spec, cpus, mem, req.expect, req.timeout, req.console, macs)
	} else {
		if req.nics {
			return nil, usagef("--nics: the builtin engine has no network device yet; use --engine qemu")
		}
		rep, err = vmmVerify(ctx, vm, f, spec, cpus, mem, req.expect, req.timeout, req.console)
	}
	if err == nil && rep.Result != "pass" {
		explainFailure(vm, rep)
	}
	return rep, err
}

// explainFailure adds to a failed boot's report what an inspection of the
// guest finds that stops it in vmconv's machines (an initramfs without
// virtio_mmio, say), so the report says why as well as where it stopped.
func explainFailure(vm *neutral.VM, rep *verdict.Report) {
	var imgs []disk.Image
	for _, d := range diskImages(vm) {
		imgs = append(imgs, d.Image)
	}
	ins, err := guest.Inspect(imgs, guest.Options{Target: "vmconv"})
	if err != nil {
		return
	}
	for _, f := range ins.Findings {
		if f.Severity == guest.Error {
			rep.Findings = append(rep.Findings, verdict.Finding{Code: f.Code, File: f.File, Line: f.Line, Message: f.Message, Fix: f.Fix})
		}
	}
}

// chooseEngine resolves --engine ("" is auto).
func chooseEngine(name string) (string, error) {
	switch name {
	case "builtin", "qemu":
		return name, nil
	case "auto", "":
		// The built-in machine where guests run at speed; QEMU elsewhere,
		// when it is installed; else the built-in machine says why not.
		if host.Kind() != host.Hardware && qemu.Available() {
			return "qemu", nil
		}
		return "builtin", nil
	}
	return "", usagef("--engine: want builtin, qemu or auto, got %q", name)
}

// reportDisks lists the VM's disks with their digests for the report.
func reportDisks(ctx context.Context, vm *neutral.VM, f *formats.Format) ([]verdict.DiskReport, error) {
	var out []verdict.DiskReport
	for _, d := range diskImages(vm) {
		sum := d.Digest
		if sum == "" {
			var err error
			if sum, err = disk.Digest(ctx, d.Image, disk.CopyOptions{}); err != nil {
				return nil, fmt.Errorf("disk %s: %w", d.ID, err)
			}
		}
		out = append(out, verdict.DiskReport{ID: d.ID, Format: f.DiskFormatName(), Digest: sum})
	}
	return out, nil
}

func qemuVerify(ctx context.Context, vm *neutral.VM, f *formats.Format, spec *bootSpec, cpus int, mem int64, expect *regexp.Regexp, timeout time.Duration, console io.Writer, nics []string) (*verdict.Report, error) {
	disks, err := reportDisks(ctx, vm, f)
	if err != nil {
		return nil, err
	}
	cfg := qemu.Config{
		KernelData: spec.kernel, InitrdData: spec.initrd, Cmdline: spec.cmdline,
		CPUs: cpus, MemoryMiB: mem, Expect: expect, Timeout: timeout, Console: console, NICs: nics,
	}
	for i, d := range diskImages(vm) {
		cfg.Disks = append(cfg.Disks, qemu.Disk{ID: d.ID, Format: f.DiskFormatName(), Digest: disks[i].Digest, Image: d.Image})
	}
	rep, err := qemu.Verify(ctx, cfg)
	if err != nil {
		return nil, err
	}
	rep.Kernel = spec.kernelName
	return rep, nil
}

// findBootEntry returns the boot entry the VM's disks hold, or nil.
func findBootEntry(vm *neutral.VM) *boot.Entry {
	var imgs []disk.Image
	for _, d := range diskImages(vm) {
		imgs = append(imgs, d.Image)
	}
	if len(imgs) == 0 {
		return nil
	}
	e, err := boot.Find(imgs)
	if err != nil {
		return nil
	}
	return e
}
