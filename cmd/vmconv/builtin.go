package main

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmconv/vmconv/formats"
	"github.com/vmconv/vmconv/formats/neutral"
	"github.com/vmconv/vmconv/vmm"
	"github.com/vmconv/vmconv/vmm/verdict"
)

// vmmConfig is the built-in machine for a VM and a boot spec.
func vmmConfig(vm *neutral.VM, f *formats.Format, spec *bootSpec, cpus int, mem int64) vmm.Config {
	cfg := vmm.Config{Kernel: spec.kernel, Initrd: spec.initrd, Cmdline: spec.cmdline, CPUs: cpus, MemoryMiB: mem}
	for _, d := range diskImages(vm) {
		cfg.Disks = append(cfg.Disks, vmm.Disk{ID: d.ID, Format: f.DiskFormatName(), Image: d.Image, Digest: d.Digest})
	}
	return cfg
}

func vmmVerify(ctx context.Context, vm *neutral.VM, f *formats.Format, spec *bootSpec, cpus int, mem int64, expect *regexp.Regexp, timeout time.Duration, console io.Writer) (*verdict.Report, error) {
	disks, err := reportDisks(ctx, vm, f)
	if err != nil {
		return nil, err
	}
	cfg := vmmConfig(vm, f, spec, cpus, mem)
	for i := range cfg.Disks {
		cfg.Disks[i].Digest = disks[i].Digest
	}
	cfg.Expect, cfg.Timeout, cfg.Console = expect, timeout, console
	rep, err := vmm.Verify(ctx, cfg)
	if err != nil {
		return nil, err
	}
	rep.Kernel = spec.kernelName
	return rep, nil
}

func newBootCmd() *cobra.Command {
	var bf bootFlags
	cmd := &cobra.Command{
		Use:   "boot VM|IMAGE",
		Short: "Boot a VM in the built-in machine with its console on this terminal (Ctrl-A X quits)",
		Long: `Boot the VM (any format) in vmconv's own KVM machine, its serial console on
this terminal in raw mode; Ctrl-A X quits, as in QEMU. Disks are behind a
copy-on-write overlay: what the guest writes is discarded when it ends.`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vm, f, err := openVMArg(args[0], bf.fmtName, bf.store)
			if err != nil {
				return err
			}
			defer vm.Close()
			spec, err := bf.resolve(vm)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			cfg := vmmConfig(vm, f, spec, bf.cpusFor(vm), bf.memoryFor(vm))
			cfg.Console, cfg.Stdin = cmd.OutOrStdout(), cmd.InOrStdin()
			if err := vmm.Boot(cmd.Context(), cfg); err != nil {
				return fmt.Errorf("boot %s: %w", args[0], err)
			}
			return nil
		},
	}
	bf.add(cmd)
	return cmd
}
