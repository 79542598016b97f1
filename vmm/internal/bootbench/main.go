// Command bootbench boots a kernel with raw disks in vmconv's VMM and exits
// when the expected marker appears: the vmconv side of bench/boot.sh.
//
//	bootbench -kernel K [-initrd I] -disk D.raw [-disk ...] -append A -expect RE -memory M -cpus N
//	bootbench -pvh K      (prints the path of K unpacked to an ELF QEMU enters through PVH)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/vmm"
	"github.com/vmconv/vmconv/vmm/qemu"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	var disks list
	kernel := flag.String("kernel", "", "kernel (ELF or bzImage)")
	appendLine := flag.String("append", "console=ttyS0", "command line")
	expect := flag.String("expect", "probe: all done", "success marker")
	mem := flag.Int64("memory", 64, "MiB")
	cpus := flag.Int("cpus", 1, "vCPUs")
	timeout := flag.Duration("timeout", time.Minute, "timeout")
	quiet := flag.Bool("q", false, "do not copy the console to stdout")
	initrd := flag.String("initrd", "", "initrd")
	pvh := flag.String("pvh", "", "print the PVH ELF QEMU should boot for this kernel, and exit")
	flag.Var(&disks, "disk", "raw disk image (repeatable)")
	flag.Parse()
	if *pvh != "" {
		fmt.Println(qemu.PVHKernel(*pvh))
		return
	}
	cfg := vmm.Config{KernelPath: *kernel, Cmdline: *appendLine, MemoryMiB: *mem, CPUs: *cpus,
		Expect: regexp.MustCompile(*expect), Timeout: *timeout}
	if *initrd != "" {
		b, err := os.ReadFile(*initrd)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		cfg.Initrd = b
	}
	if !*quiet {
		cfg.Console = os.Stdout
	}
	for i, p := range disks {
		img, err := disk.OpenRaw(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		cfg.Disks = append(cfg.Disks, vmm.Disk{ID: fmt.Sprintf("d%d", i), Format: "raw", Image: img})
	}
	rep, err := vmm.Verify(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "bootbench: %s: %s (%d ms, host %s)\n", rep.Result, rep.Reason, rep.BootMS, rep.Host)
	if rep.Result != "pass" {
		os.Exit(1)
	}
}
