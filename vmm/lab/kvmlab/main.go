// Command kvmlab runs a command in the KVM lab (see package lab): a Debian
// kernel under QEMU's TCG with a real /dev/kvm, chrooted into this host's
// root. Its output streams live; kvmlab exits with the command's status.
//
//	go run ./vmm/lab/kvmlab -- go version
//	go run ./vmm/lab/kvmlab -cpus 2 -memory 4096 -- sh bench/lab-boot.sh
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmconv/vmconv/vmm/lab"
)

func main() {
	var opt lab.Options
	flag.IntVar(&opt.CPUs, "cpus", 2, "the lab's vCPUs")
	flag.IntVar(&opt.MemoryMiB, "memory", 4096, "the lab's memory in MiB")
	quiet := flag.Bool("q", false, "say nothing of the lab itself")
	flag.StringVar(&opt.KernelDir, "kernel-dir", "", "an unpacked Debian kernel package (default: the cached one)")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: kvmlab [-cpus N] [-memory MiB] [-kernel-dir DIR] [-q] -- COMMAND [ARG...]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l, err := lab.Start(ctx, opt)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvmlab:", err)
		os.Exit(1)
	}
	defer l.Close()
	if !*quiet {
		fmt.Fprintf(os.Stderr, "kvmlab: /dev/kvm ready in %.1f s\n", l.ReadyIn.Seconds())
	}
	wd, _ := os.Getwd()
	code, err := l.Run(ctx, os.Stdout, wd, os.Environ(), flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvmlab:", err)
		code = 1
	}
	l.Close()
	os.Exit(code)
}
