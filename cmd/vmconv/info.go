package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmconv/vmconv/boot"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats"
	"github.com/vmconv/vmconv/formats/neutral"
	"github.com/vmconv/vmconv/formats/qcow2"
)

func newInfoCmd() *cobra.Command {
	var output, fmtName, store string
	cmd := &cobra.Command{
		Use:   "info IMAGE|VM",
		Short: "Show a disk image's format and sizes, or a VM's description",
		Args:  argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			path := args[0]
			f, err := detectOrLookup(path, fmtName)
			if err != nil {
				return err
			}
			if err := storeApplies(path, f, store); err != nil {
				return err
			}
			if f.IsVM() {
				describe := describeVM
				if store != "" {
					describe = func(path string, f *formats.Format) (*neutral.VM, error) { return openVM(path, f, store) }
				}
				vm, err := describe(path, f)
				if err != nil {
					return err
				}
				defer vm.Close()
				warnMissing(cmd.ErrOrStderr(), path, vm)
				entry := findBootEntry(vm)
				if output == "json" {
					return writeJSON(cmd.OutOrStdout(), struct {
						*neutral.VM
						BootEntry *boot.Entry `json:"boot_entry,omitempty"`
					}{vm, entry})
				}
				printVM(cmd.OutOrStdout(), vm)
				printBootEntry(cmd.OutOrStdout(), entry)
				return nil
			}
			img, err := f.OpenImage(path)
			if err != nil {
				return err
			}
			defer img.Close()
			info, err := imageInfo(path, f, img)
			if err != nil {
				return err
			}
			entry := findBootEntry(&neutral.VM{Disks: []neutral.Disk{{Image: img}}})
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), struct {
					*formats.ImageInfo
					BootEntry *boot.Entry `json:"boot-entry,omitempty"`
				}{info, entry})
			}
			printImageInfo(cmd.OutOrStdout(), info)
			printBootEntry(cmd.OutOrStdout(), entry)
			return nil
		},
	}
	cmd.Flags().StringVar(&output, "output", "human", "output format: human or json")
	cmd.Flags().StringVarP(&fmtName, "format", "f", "", "format of the input (detected when not given)")
	cmd.Flags().StringVar(&store, "store", "", storeFlagUsage)
	return cmd
}

// describeVM reads a VM for info: through the format's DescribeVM, which
// tolerates absent disk files, when it has one.
func describeVM(path string, f *formats.Format) (*neutral.VM, error) {
	if f.DescribeVM != nil {
		return f.DescribeVM(path)
	}
	return formats.OpenVM(path, f)
}

// warnMissing names on w each disk file the VM refers to that is not there,
// so a script reading the JSON on stdout still sees it on stderr.
func warnMissing(w io.Writer, path string, vm *neutral.VM) {
	for _, d := range vm.Disks {
		if !d.Missing {
			continue
		}
		file := d.File
		if file == "" {
			file = "(file not named)"
		}
		fmt.Fprintf(w, "vmconv: warning: %s: disk %s: %s not found\n", path, d.ID, file)
	}
}

func imageInfo(path string, f *formats.Format, img disk.Image) (*formats.ImageInfo, error) {
	info := &formats.ImageInfo{}
	if f.ImageInfo != nil {
		info = f.ImageInfo(img)
	}
	info.Filename = path
	info.Format = f.Name
	info.VirtualSize = img.Size()
	if info.ActualSize == 0 {
		info.ActualSize = actualSize(path)
	}
	var alloc int64
	exts, err := img.Extents(0, img.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: allocation map: %w", path, err)
	}
	for _, e := range exts {
		if e.Kind == disk.Data {
			alloc += e.Length
		}
	}
	info.AllocatedSize = alloc
	return info, nil
}

func printImageInfo(w io.Writer, info *formats.ImageInfo) {
	fmt.Fprintf(w, "image: %s\n", info.Filename)
	fmt.Fprintf(w, "file format: %s\n", info.Format)
	if info.Subformat != "" {
		fmt.Fprintf(w, "subformat: %s\n", info.Subformat)
	}
	fmt.Fprintf(w, "virtual size: %s (%d bytes)\n", humanSize(info.VirtualSize), info.VirtualSize)
	fmt.Fprintf(w, "disk size: %s\n", humanSize(info.ActualSize))
	fmt.Fprintf(w, "allocated: %s\n", humanSize(info.AllocatedSize))
	if info.ClusterSize > 0 {
		fmt.Fprintf(w, "cluster_size: %d\n", info.ClusterSize)
	}
	if info.BackingFilename != "" {
		// As qemu-img prints it: the path opened when it is another.
		if info.FullBackingFilename != "" && info.FullBackingFilename != info.BackingFilename {
			fmt.Fprintf(w, "backing file: %s (actual path: %s)\n", info.BackingFilename, info.FullBackingFilename)
		} else {
			fmt.Fprintf(w, "backing file: %s\n", info.BackingFilename)
		}
	}
	if info.BackingFormat != "" {
		fmt.Fprintf(w, "backing file format: %s\n", info.BackingFormat)
	}
	for i, b := range info.BackingChain {
		fmt.Fprintf(w, "backing chain[%d]: %s\n", i, b)
	}
	for i, e := range info.Extents {
		b, _ := json.Marshal(e)
		fmt.Fprintf(w, "extent[%d]: %s\n", i, b)
	}
	if len(info.Snapshots) > 0 {
		printSnapshots(w, info.Snapshots)
	}
	if len(info.Specific) > 0 {
		fmt.Fprintln(w, "Format specific information:")
		for _, kv := range info.Specific {
			fmt.Fprintf(w, "    %s: %s\n", kv[0], kv[1])
		}
	}
}

// printSnapshots lists internal snapshots in qemu-img info's columns.
func printSnapshots(w io.Writer, list []qcow2.Snapshot) {
	fmt.Fprintln(w, "Snapshot list:")
	fmt.Fprintf(w, "%-9s %-17s %7s %20s %12s %10s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT")
	for _, s := range list {
		date := time.Unix(int64(s.DateSec), 0).Format("2006-01-02 15:04:05")
		clock := fmt.Sprintf("%02d:%02d:%02d.%03d", s.VMClockSec/3600, s.VMClockSec/60%60, s.VMClockSec%60, s.VMClockNsec/1e6)
		icount := ""
		if s.ICount >= 0 {
			icount = strconv.FormatInt(s.ICount, 10)
		}
		fmt.Fprintf(w, "%-9s %-17s %7s %20s %12s %10s\n", s.ID, s.Name, humanSize(int64(s.VMStateSize)), date, clock, icount)
	}
}

func printVM(w io.Writer, vm *neutral.VM) {
	fmt.Fprintf(w, "name: %s\n", vm.Name)
	if vm.UUID != "" {
		fmt.Fprintf(w, "uuid: %s\n", vm.UUID)
	}
	if vm.Source != nil {
		fmt.Fprintf(w, "source: %s (%s)\n", vm.Source.File, vm.Source.Format)
	}
	fmt.Fprintf(w, "firmware: %s\n", vm.Firmware)
	fmt.Fprintf(w, "cpus: %d (%d per socket)\n", vm.CPUs, vm.CoresPerSocket)
	fmt.Fprintf(w, "memory: %d MiB\n", vm.MemoryMiB)
	if vm.GuestOS != "" {
		fmt.Fprintf(w, "guest os: %s\n", vm.GuestOS)
	}
	for _, d := range vm.Disks {
		fmt.Fprintf(w, "disk %s: %s\n", d.ID, diskSummary(d))
	}
	for i, n := range vm.NICs {
		fmt.Fprintf(w, "nic %d: %s\n", i, nicSummary(n))
	}
	if vm.Boot != nil {
		fmt.Fprintf(w, "boot: %s\n", bootSummary(*vm.Boot))
	}
}

// diskSummary is a disk's line in info's human output: device, bus and
// unit, then its size and flags, comma-separated.
func diskSummary(d neutral.Disk) string {
	parts := []string{fmt.Sprintf("%s on %s unit %d", d.Device, d.Bus, d.Unit)}
	switch {
	case d.Missing && d.CapacityBytes == 0:
		// The size lives in the absent file (a .vmx names only the file;
		// an .ovf declares the capacity): unknown, not zero.
		parts = append(parts, "size unknown")
	case d.Device == "cdrom" && d.CapacityBytes == 0:
		parts = append(parts, "empty")
	default:
		parts = append(parts, humanSize(d.CapacityBytes))
	}
	if d.Bootable {
		parts = append(parts, "bootable")
	}
	if d.ReadOnly {
		parts = append(parts, "read-only")
	}
	line := strings.Join(parts, ", ")
	if d.Missing {
		file := d.File
		if file == "" {
			file = "file not named"
		}
		line += " (missing: " + file + ")"
	}
	return line
}

// nicSummary is a NIC's line in info's human output; what the source left
// out is said so, not printed empty.
func nicSummary(n neutral.NIC) string {
	var parts []string
	if n.Model != "" {
		parts = append(parts, n.Model)
	}
	if n.MAC != "" {
		parts = append(parts, "MAC "+n.MAC)
	} else {
		parts = append(parts, "no MAC (the hypervisor assigns one)")
	}
	if n.Network != "" {
		parts = append(parts, fmt.Sprintf("network %q", n.Network))
	}
	return strings.Join(parts, ", ")
}

// bootSummary is the direct-boot line: only the parts the source gave (an
// xl.cfg with a bootloader has a command line and no kernel).
func bootSummary(b neutral.Boot) string {
	var parts []string
	if b.Kernel != "" {
		parts = append(parts, "kernel "+b.Kernel)
	}
	if b.Initrd != "" {
		parts = append(parts, "initrd "+b.Initrd)
	}
	if b.Cmdline != "" {
		parts = append(parts, fmt.Sprintf("cmdline %q", b.Cmdline))
	}
	if len(parts) == 0 {
		return "nothing given"
	}
	return strings.Join(parts, ", ")
}

func humanSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.3g %s", f, units[i])
}

func printBootEntry(w io.Writer, e *boot.Entry) {
	if e == nil {
		return
	}
	fmt.Fprintf(w, "boots: %s (from %s)\n", e.KernelPath, e.Config)
	if e.InitrdPath != "" {
		fmt.Fprintf(w, "initrd: %s\n", e.InitrdPath)
	}
	fmt.Fprintf(w, "cmdline: %s\n", e.Cmdline)
}
