package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats"
	"github.com/vmconv/vmconv/formats/neutral"
	"github.com/vmconv/vmconv/guest"
)

func newInspectCmd() *cobra.Command {
	var output, fmtName, target string
	var strict bool
	cmd := &cobra.Command{
		Use:   "inspect VM|IMAGE",
		Short: "Name what will stop a guest booting or reaching the network on another hypervisor",
		Long: `Inspect a guest's filesystems, read-only, before it moves: its OS, and each
finding with a code, severity, file and line, and the fix. Errors will stop
the guest booting on the target (no disk driver in the initramfs, a disk
named /dev/sda1 where the target calls it /dev/vda1, an EFI-only guest on
BIOS firmware, a Windows guest); warnings may cost it its network (a static
configuration bound to ens192 or to a MAC that is not the VM's) or leave
the old hypervisor's tools running.

The target defaults to kvm. A VM's NIC MACs and firmware are checked
against the guest; a bare image has neither.

Exit codes: 0 the inspection ran (findings, if any, are in the output);
1 the input could not be read, or --strict and an error-severity finding;
2 usage error. With --output json the report is on stdout whenever the
inspection ran, so a script tells the two 1s apart by it.`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if _, ok := guest.Targets[target]; !ok {
				return usagef("--target: want %s, got %q", strings.Join(guest.TargetNames(), ", "), target)
			}
			f, err := detectOrLookup(args[0], fmtName)
			if err != nil {
				return err
			}
			vm, err := formats.OpenVM(args[0], f)
			if err != nil {
				return err
			}
			defer vm.Close()
			rep, err := inspectVM(vm, target, f.IsVM())
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if output == "json" {
				if err := writeJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				printReport(cmd.OutOrStdout(), rep)
			}
			if strict && rep.Errors() > 0 {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&output, "output", "human", "output format: human or json")
	cmd.Flags().StringVarP(&fmtName, "format", "f", "", "format of the input (detected when not given)")
	cmd.Flags().StringVar(&target, "target", "kvm", "the hypervisor the guest goes to: "+strings.Join(guest.TargetNames(), ", "))
	cmd.Flags().BoolVar(&strict, "strict", false, "exit 1 when a finding has error severity")
	return cmd
}

// inspectVM inspects the VM's disks (CD-ROMs left out). The VM's firmware
// and MACs count only when they came from a VM configuration (isVM): a
// bare image has neither.
func inspectVM(vm *neutral.VM, target string, isVM bool) (*guest.Report, error) {
	var imgs []disk.Image
	for _, d := range diskImages(vm) {
		if d.Device != "cdrom" {
			imgs = append(imgs, d.Image)
		}
	}
	opt := guest.Options{Target: target}
	if isVM {
		opt.Firmware = vm.Firmware
		for _, n := range vm.NICs {
			opt.MACs = append(opt.MACs, n.MAC)
		}
	}
	return guest.Inspect(imgs, opt)
}

func printReport(w io.Writer, r *guest.Report) {
	name := "unknown (no /etc/os-release found)"
	if r.OS != nil {
		name = r.OS.PrettyName
		if name == "" {
			name = strings.TrimSpace(r.OS.Name + " " + r.OS.VersionID)
		}
	}
	fmt.Fprintf(w, "guest: %s\n", name)
	if r.Boot != nil {
		initrd := "no initrd"
		if r.Boot.InitrdPath != "" {
			initrd = "initrd " + r.Boot.InitrdPath
		}
		fmt.Fprintf(w, "boots: %s (%s) from %s\n", r.Boot.KernelPath, initrd, r.Boot.Config)
	}
	if r.Kernel != "" {
		fmt.Fprintf(w, "kernel: %s\n", r.Kernel)
	}
	for _, m := range r.Mounts {
		where := fmt.Sprintf("disk %d partition %d", m.Volume.Disk, m.Volume.Partition)
		if m.Volume.LV != "" {
			where = fmt.Sprintf("LV %s on disk %d", m.Volume.LV, m.Volume.Disk)
		}
		fmt.Fprintf(w, "mount: %s on %s (%s UUID=%s)\n", m.Path, where, m.Volume.FSType, m.Volume.UUID)
	}
	fmt.Fprintf(w, "target: %s\n", r.Target)
	for _, f := range r.Findings {
		where := f.Where()
		if where != "" {
			where += ": "
		}
		fmt.Fprintf(w, "%s %s: %s%s\n    fix: %s\n", f.Severity, f.Code, where, f.Message, f.Fix)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "%d error(s), %d warning(s)\n", r.Errors(), len(r.Findings)-r.Errors())
}

// targetOf is the hypervisor a conversion to format f is for.
func targetOf(f *formats.Format) string {
	switch f.Name {
	case "vmx", "vmdk", "ovf", "ova":
		return "vmware"
	case "xva", "xl", "vpc":
		return "xen"
	}
	return "kvm"
}

// warnInspect runs the inspection before a conversion and prints its
// findings as warnings on w. It never fails the conversion: a guest it
// cannot read is simply not inspected. It costs the reading of the boot
// files and the initramfs, nothing on disks with no filesystem it knows.
func warnInspect(w io.Writer, src string, vm *neutral.VM, target string, isVM bool) {
	start := time.Now()
	rep, err := inspectVM(vm, target, isVM)
	if err != nil {
		fmt.Fprintf(w, "vmconv: warning: %s: not inspected: %v\n", src, err)
		return
	}
	for _, f := range rep.Findings {
		where := f.Where()
		if where != "" {
			where = " " + where
		}
		fmt.Fprintf(w, "vmconv: warning: %s: %s %s%s: %s (fix: %s)\n", src, f.Severity, f.Code, where, f.Message, f.Fix)
	}
	if len(rep.Findings) > 0 {
		fmt.Fprintf(w, "vmconv: warning: %s: %d finding(s) for %s (%d error(s)); see vmconv inspect --target %s (%v)\n",
			src, len(rep.Findings), target, rep.Errors(), target, time.Since(start).Round(time.Millisecond))
	}
}
