// Package qemu is the second verification engine: it boots a kernel, initrd
// and command line in qemu-system-x86_64 (-M microvm) for hosts whose KVM
// cannot run the guest, with every disk served by vmconv's own NBD server
// from a copy-on-write overlay, so QEMU never opens an image file and the
// images are never changed. The console goes through the same verdict
// watcher as the built-in VMM, and the result is the same Report.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/nbd"
	"github.com/vmconv/vmconv/vmm/host"
	"github.com/vmconv/vmconv/vmm/verdict"
)

// Disk is one guest disk, attached as virtio-blk in Config.Disks order
// (the first is /dev/vda).
type Disk struct {
	ID     string
	Format string // for the report
	Digest string // for the report, when the caller has it
	Image  disk.Image
}

// Config describes one verification run.
type Config struct {
	// Kernel and Initrd are file paths; KernelData and InitrdData, when set,
	// are written to temporary files instead (a kernel found inside a guest
	// disk). Initrd is optional.
	Kernel     string
	KernelData []byte
	Initrd     string
	InitrdData []byte
	Cmdline    string
	// CPUs defaults to 1, MemoryMiB to 512.
	CPUs      int
	MemoryMiB int64
	Disks     []Disk
	// Expect is the console marker of success; nil means
	// verdict.DefaultExpect.
	Expect *regexp.Regexp
	// Timeout bounds the whole boot; zero means 5 minutes.
	Timeout time.Duration
	// Console, when set, receives the guest's console as it arrives.
	Console io.Writer
	// Accel is "auto" (the default: KVM where the host has hardware
	// virtualization, TCG otherwise), "kvm" or "tcg".
	Accel string
	// QEMU is the emulator binary; empty means qemu-system-x86_64 from PATH.
	QEMU string
	// NICs are the MACs of virtio-net NICs to attach, each on a user-mode
	// network with no way out (restrict=on): the guest sees its NICs as
	// on the target, and nothing outside the machine sees the guest.
	NICs []string
	// Overlaid says the Disks are the caller's own writable copy-on-write
	// overlays (disk.Overlay): they are served as they are, so what the
	// guest writes stays in them for the caller (vmconv fix). By default
	// each disk gets an overlay of its own, discarded at the end.
	Overlaid bool
	// KeepBzImage boots the kernel file as it is (a bzImage through QEMU's
	// firmware and the kernel's own decompressor). By default a bzImage's
	// payload is unpacked on the host (once, cached under
	// $XDG_CACHE_HOME/vmconv/vmlinux) and the ELF inside is entered at its
	// PVH entry, which halves a TCG boot.
	KeepBzImage bool
}

const (
	defaultTimeout   = 5 * time.Minute
	defaultMemoryMiB = 512
)

// Binary is the QEMU program the engine runs unless Config.QEMU says otherwise.
const Binary = "qemu-system-x86_64"

// Available reports whether the engine can run here: the QEMU binary is
// installed.
func Available() bool {
	_, err := exec.LookPath(Binary)
	return err == nil
}

// Verify boots the guest and decides from its console whether it booted. A
// guest that fails (panic, no root, timeout, QEMU dying) gives a report with
// result "fail" and a nil error; an error means the run could not be set up
// (no QEMU, no kernel, an unusable disk) or ctx ended it.
func Verify(ctx context.Context, cfg Config) (*verdict.Report, error) {
	cfg = cfg.withDefaults()
	bin, err := exec.LookPath(cfg.QEMU)
	if err != nil {
		return nil, fmt.Errorf("qemu engine: %w", err)
	}
	host := HostKind()
	accel, err := chooseAccel(cfg.Accel, host)
	if err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp("", "vmconv-qemu-")
	if err != nil {
		return nil, fmt.Errorf("qemu engine: %w", err)
	}
	defer os.RemoveAll(dir)
	kernel, initrd, err := bootFiles(dir, cfg)
	if err != nil {
		return nil, err
	}
	srv, err := serveDisks(dir, cfg)
	if err != nil {
		return nil, err
	}
	defer srv.stop()

	cmdline := guestCmdline(accel, cfg.Cmdline)
	args := qemuArgs(accel, host, kernel, initrd, cmdline, cfg.CPUs, cfg.MemoryMiB, nbdDrives(srv.sock, len(cfg.Disks)))
	nics, err := nicArgs(cfg.NICs)
	if err != nil {
		return nil, err
	}
	args = append(args, nics...)

	rep := newReport(cfg, host, cmdline)
	w := verdict.New(cfg.Expect)
	res, bootMS, err := run(ctx, bin, args, w, cfg.Console, cfg.Timeout)
	if first := srv.errs.first(); first != "" && !res.Pass {
		// A disk the guest could not read (a corrupt image) explains a
		// failure better than its console does.
		res.Reason += "; serving the disks failed: " + first
	}
	rep.Apply(res)
	rep.BootMS = bootMS
	rep.Console = w.Tail()
	return rep, err
}

// withDefaults fills the fields left zero.
func (cfg Config) withDefaults() Config {
	if cfg.CPUs <= 0 {
		cfg.CPUs = 1
	}
	if cfg.MemoryMiB <= 0 {
		cfg.MemoryMiB = defaultMemoryMiB
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.QEMU == "" {
		cfg.QEMU = Binary
	}
	return cfg
}

// bootFiles writes the kernel and initrd given in memory into dir and
// returns the paths QEMU loads; the kernel is unpacked to its ELF (entered
// through its PVH note) unless cfg.KeepBzImage.
func bootFiles(dir string, cfg Config) (kernel, initrd string, err error) {
	kernel, err = materialize(dir, "kernel", cfg.Kernel, cfg.KernelData)
	if err != nil {
		return "", "", err
	}
	if kernel == "" {
		return "", "", errors.New("qemu engine: no kernel given")
	}
	initrd, err = materialize(dir, "initrd", cfg.Initrd, cfg.InitrdData)
	if err != nil {
		return "", "", err
	}
	if !cfg.KeepBzImage {
		// Any trouble unpacking leaves the kernel to boot as it is.
		if p, err := pvhKernel(kernel, kernelCacheDir()); err == nil && p != "" {
			kernel = p
		}
	}
	return kernel, initrd, nil
}

// diskServer is the NBD server QEMU reads the guest's disks from.
type diskServer struct {
	sock    string
	errs    *errorLog // the first failure serving a disk, for the report
	cleanup []func()  // run in reverse by stop
}

// serveDisks serves every disk over NBD on a Unix socket in dir (or a
// shorter directory when dir's path is too long for one), each through its
// own copy-on-write overlay unless cfg.Overlaid.
func serveDisks(dir string, cfg Config) (_ *diskServer, err error) {
	srv := &diskServer{errs: &errorLog{}}
	defer func() {
		if err != nil {
			srv.stop()
		}
	}()
	exports := make(map[string]nbd.Export, len(cfg.Disks))
	for i, d := range cfg.Disks {
		img, err := srv.guestDisk(i, d, cfg.Overlaid)
		if err != nil {
			return nil, err
		}
		exports[exportName(i)] = nbd.Export{Image: img, Writable: true, Description: d.ID}
	}
	srv.sock = filepath.Join(dir, "nbd.sock")
	if len(srv.sock) >= 100 { // sun_path holds 108 bytes
		sdir, err := os.MkdirTemp("/tmp", "vmconv-nbd-")
		if err != nil {
			return nil, fmt.Errorf("qemu engine: %w", err)
		}
		srv.cleanup = append(srv.cleanup, func() { os.RemoveAll(sdir) })
		srv.sock = filepath.Join(sdir, "nbd.sock")
	}
	l, err := nbd.Listen("unix:" + srv.sock)
	if err != nil {
		return nil, fmt.Errorf("qemu engine: %w", err)
	}
	srvCtx, stopServer := context.WithCancel(context.Background())
	srvDone := make(chan error, 1)
	go func() { srvDone <- (&nbd.Server{Exports: exports, Logf: srv.errs.logf}).Serve(srvCtx, l) }()
	srv.cleanup = append(srv.cleanup, func() {
		stopServer()
		<-srvDone
	})
	return srv, nil
}

// guestDisk is disk i as the guest may write it: the caller's overlay when
// overlaid, else a new overlay over the image.
func (srv *diskServer) guestDisk(i int, d Disk, overlaid bool) (disk.Image, error) {
	if d.Image == nil {
		return nil, fmt.Errorf("qemu engine: disk %d (%s) has no image", i, d.ID)
	}
	if overlaid {
		if _, ok := d.Image.(io.WriterAt); !ok {
			return nil, fmt.Errorf("qemu engine: disk %s: an overlaid disk must be writable", d.ID)
		}
		return d.Image, nil
	}
	ov, err := disk.NewOverlay(d.Image)
	if err != nil {
		return nil, fmt.Errorf("qemu engine: disk %s: %w", d.ID, err)
	}
	srv.cleanup = append(srv.cleanup, func() { ov.Close() })
	return ov, nil
}

// stop stops the server and closes the overlays, the last opened first.
func (srv *diskServer) stop() {
	for i := len(srv.cleanup) - 1; i >= 0; i-- {
		srv.cleanup[i]()
	}
	srv.cleanup = nil
}

// guestCmdline is the kernel command line as the guest gets it.
func guestCmdline(accel, cmdline string) string {
	if accel == "tcg" && !strings.Contains(cmdline, "tsc_early_khz=") {
		// Without kvm-clock, TSC calibration against the emulated PIT can
		// fail under host load and stall the boot.
		if khz := HostTSCkHz(); khz > 0 {
			cmdline = strings.TrimSpace(cmdline + " tsc_early_khz=" + strconv.FormatInt(khz, 10))
		}
	}
	return cmdline
}

// newReport is the report's setup part, before the boot's verdict.
func newReport(cfg Config, host, cmdline string) *verdict.Report {
	rep := &verdict.Report{
		Engine:    "qemu",
		Host:      host,
		Kernel:    cfg.Kernel,
		Cmdline:   cmdline,
		CPUs:      cfg.CPUs,
		MemoryMiB: cfg.MemoryMiB,
		Disks:     []verdict.DiskReport{},
	}
	if rep.Kernel == "" {
		rep.Kernel = "(in memory)"
	}
	for _, d := range cfg.Disks {
		rep.Disks = append(rep.Disks, verdict.DiskReport{ID: d.ID, Format: d.Format, Digest: d.Digest})
	}
	return rep
}

var macRE = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`)

// nicArgs attaches one virtio-net-device per MAC, each on its own
// restricted user-mode network.
func nicArgs(macs []string) ([]string, error) {
	var args []string
	for i, mac := range macs {
		if !macRE.MatchString(mac) {
			return nil, fmt.Errorf("qemu engine: NIC %d: MAC %q is not xx:xx:xx:xx:xx:xx", i, mac)
		}
		id := "n" + strconv.Itoa(i)
		args = append(args, "-netdev", "user,id="+id+",restrict=on", "-device", "virtio-net-device,netdev="+id+",mac="+mac)
	}
	return args, nil
}

func exportName(i int) string { return "d" + strconv.Itoa(i) }

// nbdDrives returns the -drive values for exports d0…d(n-1) on the NBD
// socket sock.
func nbdDrives(sock string, n int) []string {
	drives := make([]string, n)
	for i := range drives {
		drives[i] = "driver=nbd,server.type=unix,server.path=" + qemuOptEscape(sock) + ",export=" + exportName(i)
	}
	return drives
}

// qemuArgs returns QEMU's arguments for a microvm booting kernel, with one
// virtio-blk-device per drive in order (the first is /dev/vda).
func qemuArgs(accel, host, kernel, initrd, cmdline string, cpus int, memMiB int64, drives []string) []string {
	args := []string{"-M", "microvm"}
	switch accel {
	case "kvm":
		cpu := "host"
		if host != HostHardware {
			cpu = "max,-arch-capabilities" // PVM advertises an MSR it cannot set
		}
		args = append(args, "-accel", "kvm", "-cpu", cpu)
	default:
		args = append(args, "-accel", "tcg", "-cpu", "max")
	}
	args = append(args,
		"-m", strconv.FormatInt(memMiB, 10),
		"-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-nographic",
		"-serial", "stdio", "-no-reboot",
		"-kernel", kernel,
		"-append", cmdline,
	)
	if initrd != "" {
		args = append(args, "-initrd", initrd)
	}
	for i, d := range drives {
		id := exportName(i)
		args = append(args,
			"-drive", d+",if=none,id="+id,
			"-device", "virtio-blk-device,drive="+id,
		)
	}
	return args
}

// qemuOptEscape doubles commas, QEMU's way to quote them in an option value.
func qemuOptEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func materialize(dir, name, path string, data []byte) (string, error) {
	if data != nil {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return "", fmt.Errorf("qemu engine: %s: %w", name, err)
		}
		return p, nil
	}
	if path == "" {
		return "", nil
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("qemu engine: %s: %w", name, err)
	}
	return path, nil
}

func chooseAccel(want, host string) (string, error) {
	switch want {
	case "", "auto":
		if host == HostHardware {
			return "kvm", nil
		}
		return "tcg", nil
	case "kvm":
		if host == HostNone {
			return "", errors.New("qemu engine: --accel kvm but this host has no usable /dev/kvm")
		}
		return "kvm", nil
	case "tcg":
		return "tcg", nil
	}
	return "", fmt.Errorf("qemu engine: unknown accelerator %q (want auto, kvm or tcg)", want)
}

// consoleSink feeds the watcher and the optional console log and signals the
// first decision.
type consoleSink struct {
	w       *verdict.Watcher
	log     io.Writer
	start   time.Time
	once    sync.Once
	decided chan struct{}
	at      time.Duration
}

func (s *consoleSink) Write(p []byte) (int, error) {
	s.w.Write(p)
	if s.log != nil {
		s.log.Write(p) // a failing log must not stop the boot
	}
	if _, ok := s.w.Decided(); ok {
		s.once.Do(func() {
			s.at = time.Since(s.start)
			close(s.decided)
		})
	}
	return len(p), nil
}

// errorLog keeps the first error the NBD server reported.
type errorLog struct {
	mu  sync.Mutex
	msg string
	n   int
}

func (e *errorLog) logf(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == 0 {
		e.msg = fmt.Sprintf(format, args...)
	}
	e.n++
}

func (e *errorLog) first() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n > 1 {
		return fmt.Sprintf("%s (and %d more)", e.msg, e.n-1)
	}
	return e.msg
}

// tailBuffer keeps the last bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 8192 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-4096:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) lastLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// run starts QEMU in its own process group, watches the console until a
// decision, the process ending, the timeout or ctx, and always kills the whole
// group before it returns.
func run(ctx context.Context, bin string, args []string, w *verdict.Watcher, console io.Writer, timeout time.Duration) (verdict.Result, int64, error) {
	cmd := exec.Command(bin, args...)
	stderr := &tailBuffer{}
	sink := &consoleSink{w: w, log: console, decided: make(chan struct{})}
	cmd.Stdin = nil
	cmd.Stdout = sink
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	sink.start = time.Now()
	if err := cmd.Start(); err != nil {
		return verdict.Result{Reason: "qemu did not start"}, 0, fmt.Errorf("qemu engine: %w", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	kill := func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var (
		res    verdict.Result
		ctxErr error
	)
	select {
	case <-sink.decided:
		kill()
		<-waited
		res, _ = w.Decided()
		return res, sink.at.Milliseconds(), nil
	case err := <-waited:
		kill() // anything it left behind
		w.Flush()
		if r, ok := w.Decided(); ok {
			return r, sink.elapsed(), nil
		}
		reason := "the guest stopped before the marker appeared"
		if err != nil {
			reason = fmt.Sprintf("qemu exited (%v) before the marker appeared", err)
			if l := stderr.lastLine(); l != "" {
				reason += ": " + l
			}
		}
		res = w.Decide(verdict.Result{Reason: reason})
	case <-timer.C:
		kill()
		<-waited
		res = w.Decide(verdict.Result{Reason: fmt.Sprintf("timeout: no marker within %v", timeout)})
	case <-ctx.Done():
		kill()
		<-waited
		ctxErr = ctx.Err()
		res = w.Decide(verdict.Result{Reason: "verification interrupted: " + ctxErr.Error()})
	}
	return res, sink.elapsed(), ctxErr
}

func (s *consoleSink) elapsed() int64 {
	select {
	case <-s.decided:
		return s.at.Milliseconds()
	default:
		return time.Since(s.start).Milliseconds()
	}
}

// Host kinds, as the report names them (see package host).
const (
	HostHardware = host.Hardware
	HostPVM      = host.PVM
	HostNone     = host.None
)

// HostKind says what virtualization this host offers QEMU.
func HostKind() string { return host.Kind() }

// HostTSCkHz returns the host's CPU clock in kHz from /proc/cpuinfo, 0 when
// unknown.
func HostTSCkHz() int64 {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "cpu MHz" {
			mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || mhz <= 0 {
				return 0
			}
			return int64(mhz*1000 + 0.5)
		}
	}
	return 0
}
