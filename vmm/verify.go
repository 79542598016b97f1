package vmm

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/vmconv/vmconv/vmm/verdict"
)

// Engine is the report's engine name for this VMM.
const Engine = "builtin"

// ErrNoKVM is returned when the host has no usable /dev/kvm.
type ErrNoKVM struct {
	Host string
	Err  error
}

func (e *ErrNoKVM) Error() string {
	return fmt.Sprintf("vmm: cannot use /dev/kvm (host kind %q): %v", e.Host, e.Err)
}

func (e *ErrNoKVM) Unwrap() error { return e.Err }

// decider feeds the console to the watcher (and the caller's writer) and
// stops the machine as soon as the watcher decides.
type decider struct {
	w    *verdict.Watcher
	out  io.Writer
	stop func()
}

func (d *decider) Write(p []byte) (int, error) {
	d.w.Write(p)
	if d.out != nil {
		d.out.Write(p)
	}
	if _, ok := d.w.Decided(); ok {
		d.stop()
	}
	return len(p), nil
}

// Verify boots cfg and decides from the console whether the guest came up.
// A guest that fails (panic, no root, emergency shell, a fault, a reset
// before the marker, timeout) gives a report with result "fail" and no
// error; errors are for what stops the VMM itself (bad kernel, no KVM).
func Verify(ctx context.Context, cfg Config) (*verdict.Report, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	host := HostKind()
	rep := &verdict.Report{Host: host, Engine: Engine, Kernel: cfg.KernelPath, CPUs: cfg.CPUs, MemoryMiB: cfg.MemoryMiB}
	for _, d := range cfg.Disks {
		rep.Disks = append(rep.Disks, verdict.DiskReport{ID: d.ID, Format: d.Format, Digest: d.Digest})
	}
	w := verdict.New(cfg.Expect)
	dec := &decider{w: w, out: cfg.Console}
	start := time.Now()
	m, err := newMachine(&cfg, dec, host)
	if err != nil {
		return nil, err
	}
	defer m.close()
	dec.stop = func() { m.stop(stopReason{reason: "console decided"}) }
	rep.Cmdline = m.cmd
	res := m.runUntil(ctx, cfg.Timeout)
	w.Flush()
	final := w.Decide(res)
	rep.Apply(final)
	rep.BootMS = time.Since(start).Milliseconds()
	rep.Console = w.Tail()
	return rep, nil
}

// runUntil runs the machine until it stops, the context ends or the timeout
// passes, and returns the VMM-side decision (used when the console has none).
func (m *machine) runUntil(ctx context.Context, timeout time.Duration) verdict.Result {
	t := time.NewTimer(timeout)
	defer t.Stop()
	m.start()
	select {
	case <-m.stopCh:
	case <-t.C:
		m.stop(stopReason{reason: fmt.Sprintf("timeout after %v without the expected marker", timeout)})
	case <-ctx.Done():
		m.stop(stopReason{reason: "cancelled: " + ctx.Err().Error()})
	}
	m.wait()
	r := m.why
	switch {
	case r.reset:
		return verdict.Result{Reason: r.reason + " before the expected marker"}
	default:
		return verdict.Result{Reason: r.reason}
	}
}
