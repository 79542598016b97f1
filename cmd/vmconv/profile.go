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
	stopCPU := profileTo(stderr, "VMCONV_CPUPROFILE", pprof.StartCPUProfile, pprof.StopCPUProfile)
	stopTrace := profileTo(stderr, "VMCONV_TRACE", trace.Start, trace.Stop)
	return func() { stopCPU(); stopTrace() }
}

// profileTo starts a profile into the file the environment variable env
// names, when it is set, and returns what ends it.
func profileTo(stderr io.Writer, env string, start func(io.Writer) error, stop func()) func() {
	path := os.Getenv(env)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		if err = start(f); err != nil {
			f.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "vmconv: %s: %v\n", env, err)
		return func() {}
	}
	return func() { stop(); f.Close() }
}
