package main

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// startProfiling writes a CPU profile to $VMCONV_CPUPROFILE and an
// execution trace (the timeline: which goroutine ran, blocked or waited in
// a syscall when) to $VMCONV_TRACE while the command runs, for `go tool
// pprof` and `go tool trace`. The returned function ends both.
func startProfiling(stderr io.Writer) (stop func()) {
	var stops []func()
	if path := os.Getenv("VMCONV_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err != nil {
			fmt.Fprintf(stderr, "vmconv: VMCONV_CPUPROFILE: %v\n", err)
		} else if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "vmconv: VMCONV_CPUPROFILE: %v\n", err)
			f.Close()
		} else {
			stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
		}
	}
	if path := os.Getenv("VMCONV_TRACE"); path != "" {
		if f, err := os.Create(path); err != nil {
			fmt.Fprintf(stderr, "vmconv: VMCONV_TRACE: %v\n", err)
		} else if err := trace.Start(f); err != nil {
			fmt.Fprintf(stderr, "vmconv: VMCONV_TRACE: %v\n", err)
			f.Close()
		} else {
			stops = append(stops, func() { trace.Stop(); f.Close() })
		}
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}
