package fix

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/vmconv/vmconv/boot"
	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/guest"
	"github.com/vmconv/vmconv/vmm/verdict"
)

// BootRequest is one fixer boot, for an engine (QEMU or vmconv's machine).
type BootRequest struct {
	Kernel, Initrd []byte
	Cmdline        string
	// Disks are the writable overlays, in the VM's order: the engine
	// serves them as they are (no overlay of its own).
	Disks     []disk.Image
	MemoryMiB int64
	Expect    *regexp.Regexp
	Timeout   time.Duration
	Console   io.Writer
}

// Booter boots a request and returns the engine's verdict.
type Booter func(ctx context.Context, req BootRequest) (*verdict.Report, error)

// Config is one fix run.
type Config struct {
	// Disks are the VM's disks; they are only read.
	Disks  []disk.Image
	Target string   // "kvm" (default), "xen", "vmware"
	MACs   []string // the VM's NIC MACs; none for a bare image
	// Init is the program that runs as /init; empty means this one.
	Init      string
	Boot      Booter
	MemoryMiB int64 // 0: 1024
	Timeout   time.Duration
	// Console, when set, receives the fixer's console as it arrives.
	Console io.Writer
}

// Outcome is what a fix run did. When it planned no step, Overlays is nil
// and the disks need no change.
type Outcome struct {
	Inspection *guest.Report `json:"-"`
	Plan       *Plan         `json:"plan"`
	Unfixed    []Unfixed     `json:"unfixed"`
	Results    []Result      `json:"results"`
	BootMS     int64         `json:"boot_ms"`
	// Overlays hold the fixed disks, one per Config.Disks; the caller
	// converts them and closes them.
	Overlays []*disk.Overlay `json:"-"`
}

// Close releases the overlays.
func (o *Outcome) Close() {
	for _, ov := range o.Overlays {
		ov.Close()
	}
}

// StepError is a step that ran and failed in the guest.
type StepError struct{ Results []Result }

func (e *StepError) Error() string {
	var parts []string
	for _, r := range e.Results {
		if !r.OK {
			parts = append(parts, r.Step+": "+r.Message)
		}
	}
	return "fix failed in the guest: " + strings.Join(parts, "; ")
}

// maxConsole bounds the console kept to read the results from.
const maxConsole = 8 << 20

// Run inspects the guest, plans the fixes, boots the fixer over overlays
// of the disks and reads the results back. An error means the fix did not
// happen (or a step failed: *StepError); the outcome is returned with it
// when there is one, for its results.
func Run(ctx context.Context, cfg Config) (*Outcome, error) {
	if cfg.Target == "" {
		cfg.Target = "kvm"
	}
	target, ok := guest.Targets[cfg.Target]
	if !ok {
		return nil, fmt.Errorf("fix: unknown target %q", cfg.Target)
	}
	rep, err := guest.Inspect(cfg.Disks, guest.Options{Target: cfg.Target, MACs: cfg.MACs})
	if err != nil {
		return nil, err
	}
	plan, unfixed, err := PlanFor(rep, target, cfg.MACs)
	if err != nil {
		return nil, err
	}
	out := &Outcome{Inspection: rep, Plan: plan, Unfixed: unfixed, Results: []Result{}}
	if len(plan.Steps) == 0 {
		return out, nil
	}
	if rep.Boot == nil || len(rep.Boot.Kernel) == 0 {
		return out, errors.New("fix: the guest's kernel was not found; it boots the fixer")
	}
	initrd, err := fixerInitramfs(cfg.Init, plan, rep)
	if err != nil {
		return out, err
	}
	for _, d := range cfg.Disks {
		ov, err := disk.NewOverlay(d)
		if err != nil {
			out.Close()
			return out, err
		}
		out.Overlays = append(out.Overlays, ov)
	}
	kept := false // the overlays go to the caller only when the fix worked
	defer func() {
		if !kept {
			out.Close()
			out.Overlays = nil
		}
	}()
	con := &limitedBuffer{max: maxConsole}
	var console io.Writer = con
	if cfg.Console != nil {
		console = io.MultiWriter(con, cfg.Console)
	}
	req := BootRequest{Kernel: rep.Boot.Kernel, Initrd: initrd,
		Cmdline:   boot.AdjustCmdline("panic=-1 loglevel=3 rdinit=/init", len(cfg.Disks)),
		MemoryMiB: max(cfg.MemoryMiB, 1024), Expect: regexp.MustCompile("^" + regexp.QuoteMeta(End) + "$"),
		Timeout: cfg.Timeout, Console: console}
	for _, ov := range out.Overlays {
		req.Disks = append(req.Disks, ov)
	}
	vr, err := cfg.Boot(ctx, req)
	if err != nil {
		return out, fmt.Errorf("fix: booting the fixer: %w", err)
	}
	out.BootMS = vr.BootMS
	results, perr := ParseConsole(con.buf.Bytes())
	out.Results = append(out.Results, results...)
	if vr.Result != verdict.Pass {
		return out, fmt.Errorf("fix: the fixer did not finish: %s%s", vr.Reason, lastResult(results))
	}
	if perr != nil {
		return out, perr
	}
	for _, r := range results {
		if !r.OK {
			return out, &StepError{Results: results}
		}
	}
	if len(results) < len(plan.Steps) {
		return out, fmt.Errorf("fix: %d of %d steps reported", len(results), len(plan.Steps))
	}
	kept = true
	return out, nil
}

func lastResult(rs []Result) string {
	for i := len(rs) - 1; i >= 0; i-- {
		if !rs[i].OK {
			return fmt.Sprintf(" (%s: %s)", rs[i].Step, rs[i].Message)
		}
	}
	return ""
}

// fixerInitramfs builds the initramfs for the plan from the guest's own
// modules and the init program.
func fixerInitramfs(initPath string, plan *Plan, rep *guest.Report) ([]byte, error) {
	if initPath == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("fix: the program to run as /init: %w", err)
		}
		initPath = exe
	}
	want := []string{"virtio_mmio", "virtio_blk"}
	for _, m := range append([]Mount{plan.Root}, plan.Mounts...) {
		var mod string
		switch m.FSType {
		case "ext2", "ext3", "ext4":
			mod = "ext4"
		case "xfs", "btrfs":
			mod = m.FSType
		default:
			return nil, fmt.Errorf("fix: the %s filesystem of %s is not supported", m.FSType, m.Path)
		}
		if m.LV != "" && !slices.Contains(want, "dm_mod") {
			want = append(want, "dm_mod") // /init maps the LV itself
		}
		if !slices.Contains(want, mod) {
			want = append(want, mod)
		}
	}
	// The filesystems ask the crypto API for crc32c through modprobe,
	// which the fixer has not: it is loaded explicitly, first.
	optional := []string{"crc32c_generic", "virtio_pci"}
	mods, err := GuestModules(rep.Mounts[0].Volume.FS, plan.Kernel, want, optional)
	if err != nil {
		return nil, err
	}
	// crc32c before the filesystem that needs it.
	mods = crcFirst(mods)
	var buf bytes.Buffer
	if err := BuildInitramfs(&buf, initPath, plan, mods); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func crcFirst(mods []Module) []Module {
	var out, rest []Module
	for _, m := range mods {
		if strings.HasPrefix(m.Name, "crc32c") {
			out = append(out, m)
		} else {
			rest = append(rest, m)
		}
	}
	return append(out, rest...)
}
