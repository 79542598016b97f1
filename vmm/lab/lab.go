// Package lab runs commands in the KVM lab: Debian's stock kernel under
// QEMU's TCG, whose emulated AMD-V (with nested paging) gives a real
// /dev/kvm on hosts that have none, or only a PVM one that cannot run an
// ordinary kernel at speed.
//
// The lab shares the host's root file system over virtio-9p and runs every
// command chrooted into it, with its own /proc, /sys and /dev: a command sees
// the same paths, tools, checkout and caches as on the host. Its TMPDIR is a
// tmpfs of the lab's own (TempDir), which sparse files and hole punching need.
// Commands go in, and their output comes back live, over a virtio console;
// the kernel's own console is kept apart in a log for when the lab fails.
//
// Everything in the lab runs under TCG, so it is slow (a kernel boot takes
// tens of seconds) and noisy; compare times only within one lab run.
package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmconv/vmconv/vmm/qemu"
)

// Options configure a lab; zero values take the defaults.
type Options struct {
	// QEMU is the emulator binary (default qemu-system-x86_64).
	QEMU string
	// KernelDir is an unpacked Debian kernel package (boot/vmlinuz-*,
	// lib/modules); default: the one vmm/qemu/testdata/fetch-kernel.sh
	// caches, fetched if needed.
	KernelDir string
	// Busybox is a statically linked busybox (default /bin/busybox).
	Busybox   string
	MemoryMiB int // default 4096
	CPUs      int // default 2
	// ReadyTimeout bounds the boot to an open /dev/kvm (default 120 s).
	ReadyTimeout time.Duration
}

// Lab is a running lab.
type Lab struct {
	cmd     *exec.Cmd
	ctl     io.WriteCloser
	out     *bufio.Reader
	console string // the lab kernel's console log
	dir     string
	exited  chan struct{}
	waitErr error

	mu     sync.Mutex // one command at a time
	closed bool
	// ReadyIn is how long the lab took from QEMU's start to /dev/kvm open.
	ReadyIn time.Duration
}

const (
	// TempDir is the commands' TMPDIR inside the lab: a tmpfs.
	TempDir = "/run/tmp"

	readyMark  = "@@lab-ready@@"
	failedMark = "@@lab-failed "
	exitMark   = "@@lab-exit "
	// poweroffLine ends the init's command loop (a tty never sees EOF).
	poweroffLine = "@@lab-poweroff@@"
)

// repoRoot is the checkout this package was built from.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// CacheDir is where the lab keeps what it builds: initramfs images, copies
// of test binaries.
func CacheDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "vmconv", "lab")
}

// DebianKernel returns the unpacked Debian kernel package that
// fetch-kernel.sh caches, fetching it when it is not there yet.
func DebianKernel() (string, error) {
	script := filepath.Join(repoRoot(), "vmm", "qemu", "testdata", "fetch-kernel.sh")
	out, err := exec.Command("sh", script).Output()
	if err != nil {
		msg := err.Error()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return "", fmt.Errorf("lab: no Debian kernel: %s: %s (apt-get must reach Debian's packages)", script, msg)
	}
	return strings.TrimSpace(string(out)), nil
}

func (o *Options) defaults() error {
	if o.QEMU == "" {
		o.QEMU = "qemu-system-x86_64"
	}
	if _, err := exec.LookPath(o.QEMU); err != nil {
		return fmt.Errorf("lab: %s is not installed (Debian: apt-get install qemu-system-x86): %w", o.QEMU, err)
	}
	if o.Busybox == "" {
		o.Busybox = "/bin/busybox"
	}
	if out, err := exec.Command("file", "-L", o.Busybox).Output(); err == nil && !strings.Contains(string(out), "statically linked") {
		return fmt.Errorf("lab: %s is not statically linked (Debian: apt-get install busybox-static)", o.Busybox)
	}
	if _, err := os.Stat(o.Busybox); err != nil {
		return fmt.Errorf("lab: no busybox (Debian: apt-get install busybox-static): %w", err)
	}
	if o.KernelDir == "" {
		d, err := DebianKernel()
		if err != nil {
			return err
		}
		o.KernelDir = d
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 4096
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 120 * time.Second
	}
	return nil
}

// Start boots a lab and returns once its /dev/kvm is open and it takes
// commands. Close it when done.
func Start(ctx context.Context, opt Options) (*Lab, error) {
	if err := opt.defaults(); err != nil {
		return nil, err
	}
	kernels, _ := filepath.Glob(filepath.Join(opt.KernelDir, "boot", "vmlinuz-*"))
	if len(kernels) == 0 {
		return nil, fmt.Errorf("lab: no boot/vmlinuz-* in %s", opt.KernelDir)
	}
	initrd, err := initramfs(opt.KernelDir, opt.Busybox, CacheDir())
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "vmconv-lab-")
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l := &Lab{dir: dir, console: filepath.Join(dir, "console.log"), exited: make(chan struct{})}
	l.cmd = exec.Command(opt.QEMU, qemuArgs(qemu.PVHKernel(kernels[0]), initrd, l.console, opt)...)
	l.cmd.Stderr = &tail{max: 4096}
	if l.ctl, err = l.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := l.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	l.out = bufio.NewReaderSize(stdout, 64<<10)
	start := time.Now()
	if err := l.startQEMU(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("lab: starting %s: %w", opt.QEMU, err)
	}
	if err := l.waitReady(ctx, opt.ReadyTimeout); err != nil {
		l.Close()
		return nil, err
	}
	l.ReadyIn = time.Since(start)
	go l.watchConsole(2 * time.Second)
	return l, nil
}

// wedgedSigns are what the lab's kernel prints when it can no longer run
// its commands. Under emulated AMD-V it has been seen to stop taking timer
// interrupts (its clock stops, so its own soft-lockup panic never comes)
// after printing an RCU stall.
var wedgedSigns = []string{
	"rcu: INFO: rcu_preempt",
	"watchdog: BUG: soft lockup",
	"Oops: ",
	"BUG: ",
	"stack guard page",
	"Kernel panic",
}

// heartbeatMark is what the lab's init writes to its console every 5 s;
// silenceLimit is how long the host waits for it before stopping the lab.
// A live lab's beats were never more than 8 s apart, even with two labs
// booting nested guests on two busy cores; every second waited past that
// is lost each time the emulation stops a lab's clock.
const (
	heartbeatMark = "@@lab-alive@@"
	silenceLimit  = 30 * time.Second
)

// watchConsole kills QEMU as soon as the lab's console shows it is wedged,
// or its heartbeat stops, so that the command running ends (RunShared
// reruns it in a new lab) rather than hangs until the test's deadline.
func (l *Lab) watchConsole(every time.Duration) {
	var off int64
	lastBeat := time.Now()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.exited:
			return
		case <-t.C:
		}
		b := l.consoleFrom(off)
		off += int64(len(b))
		if bytes.Contains(b, []byte(heartbeatMark)) {
			lastBeat = time.Now()
		}
		why := ""
		for _, sign := range wedgedSigns {
			if bytes.Contains(b, []byte(sign)) {
				why = fmt.Sprintf("its kernel printed %q", sign)
			}
		}
		if why == "" && time.Since(lastBeat) > silenceLimit {
			why = fmt.Sprintf("no heartbeat for %v", silenceLimit)
		}
		if why != "" {
			fmt.Fprintf(os.Stderr, "lab: %s: stopping it\n", why)
			l.kill()
			return
		}
	}
}

// consoleFrom returns the whole lines of the console log from off on.
func (l *Lab) consoleFrom(off int64) []byte {
	f, err := os.Open(l.console)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, _ := io.ReadAll(io.NewSectionReader(f, off, 1<<30))
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[:i+1]
	}
	return nil
}

// startQEMU starts QEMU from a thread that lives as long as QEMU does, with
// SIGKILL as its parent-death signal: a test binary that dies (a timeout's
// panic, a kill) takes its lab with it. The signal follows the thread, not
// the process, hence the locked thread.
func (l *Lab) startQEMU() error {
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with QEMU's wait
		if err := l.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		l.waitErr = l.cmd.Wait()
		close(l.exited)
	}()
	return <-started
}

// qemuArgs boots the kernel in a microvm with the host's root on 9p and the
// control console on stdio.
func qemuArgs(kernel, initrd, console string, o Options) []string {
	// A lab whose kernel locks up (seen under emulated AMD-V: both CPUs
	// stuck, RCU starved) panics after a minute instead of hanging its
	// command until the test times out; a panic ends QEMU (-no-reboot), and
	// RunShared then runs the command again in a new lab.
	cmdline := "console=ttyS0 quiet panic=-1 reboot=t oops=panic softlockup_panic=1 watchdog_thresh=30"
	if khz := qemu.HostTSCkHz(); khz > 0 {
		// Under TCG the PIT calibration of the TSC can fail under load.
		cmdline += " tsc_early_khz=" + strconv.FormatInt(khz, 10)
	}
	return []string{
		"-M", "microvm", "-accel", "tcg", "-cpu", "max",
		"-m", strconv.Itoa(o.MemoryMiB), "-smp", strconv.Itoa(o.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", cmdline,
		"-chardev", "file,id=con,path=" + console, "-serial", "chardev:con",
		"-device", "virtio-serial-device",
		"-chardev", "stdio,id=ctl,signal=off", "-device", "virtconsole,chardev=ctl",
		"-fsdev", "local,id=root,path=/,security_model=none,multidevs=remap",
		"-device", "virtio-9p-device,fsdev=root,mount_tag=hostroot",
	}
}

func (l *Lab) waitReady(ctx context.Context, timeout time.Duration) error {
	lines := make(chan string)
	errc := make(chan error, 1)
	go func() {
		for {
			s, err := l.out.ReadString('\n')
			if err != nil {
				errc <- err
				return
			}
			s = strings.TrimRight(s, "\r\n")
			if s == readyMark || strings.HasPrefix(s, failedMark) {
				lines <- s
				return
			}
		}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case s := <-lines:
		if s == readyMark {
			return nil
		}
		return fmt.Errorf("lab: %s%s", strings.TrimSuffix(strings.TrimPrefix(s, failedMark), "@@"), l.consoleTail())
	case err := <-errc:
		<-l.exited
		return fmt.Errorf("lab: QEMU ended before the lab was ready (%v, %v)%s%s", err, l.waitErr, l.stderrTail(), l.consoleTail())
	case <-t.C:
		return fmt.Errorf("lab: not ready after %v%s", timeout, l.consoleTail())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run runs argv in the lab in directory dir with exactly the environment env
// (TMPDIR set to TempDir), its output (stdout and stderr together) copied to
// w as it comes, and returns its exit status. An error means the lab itself
// failed or ctx ended (which ends the lab too).
func (l *Lab) Run(ctx context.Context, w io.Writer, dir string, env, argv []string) (int, error) {
	var e []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "TMPDIR=") && !strings.ContainsAny(kv, "\n\r") {
			e = append(e, Quote(kv))
		}
	}
	e = append(e, "TMPDIR="+TempDir)
	return l.RunLine(ctx, w, "cd "+Quote(dir)+" && exec env -i "+strings.Join(e, " ")+" "+QuoteArgs(argv))
}

// RunLine runs one shell command line in the lab, chrooted into the host's
// root, with the lab init's environment; see Run.
func (l *Lab) RunLine(ctx context.Context, w io.Writer, line string) (int, error) {
	if strings.ContainsAny(line, "\n\r") {
		return -1, fmt.Errorf("lab: a command is one line")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := io.WriteString(l.ctl, line+"\n"); err != nil {
		return -1, fmt.Errorf("lab: sending the command: %w", err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			l.kill() // the command cannot be interrupted alone: the lab goes
		case <-done:
		}
	}()
	var prev string // held back: the empty line the lab writes before the mark
	held := false
	for {
		s, err := l.out.ReadString('\n')
		if err != nil {
			if ctx.Err() != nil {
				return -1, fmt.Errorf("lab: %w", ctx.Err())
			}
			<-l.exited
			return -1, fmt.Errorf("lab: QEMU ended during the command (%v)%s%s", l.waitErr, l.stderrTail(), l.consoleTail())
		}
		if rest, ok := strings.CutPrefix(strings.TrimRight(s, "\r\n"), exitMark); ok {
			if held && prev != "\n" {
				io.WriteString(w, prev)
			}
			code, err := strconv.Atoi(strings.TrimSuffix(rest, "@@"))
			if err != nil {
				return -1, fmt.Errorf("lab: bad exit line %q", s)
			}
			return code, nil
		}
		if held {
			io.WriteString(w, prev)
		}
		prev, held = s, true
	}
}

// exitedNow reports whether QEMU has ended.
func (l *Lab) exitedNow() bool {
	select {
	case <-l.exited:
		return true
	default:
		return false
	}
}

// Close stops the lab: the init powers the machine off when its console
// closes; QEMU is killed if it has not gone within a few seconds.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	io.WriteString(l.ctl, poweroffLine+"\n")
	l.ctl.Close()
	select {
	case <-l.exited:
	case <-time.After(5 * time.Second):
		l.kill()
		<-l.exited
	}
	os.RemoveAll(l.dir)
	return nil
}

func (l *Lab) kill() {
	if l.cmd.Process != nil {
		l.cmd.Process.Kill()
	}
}

// Console returns the lab kernel's console log so far.
func (l *Lab) Console() string {
	b, _ := os.ReadFile(l.console)
	return strings.ReplaceAll(string(b), heartbeatMark+"\n", "")
}

func (l *Lab) consoleTail() string {
	c := l.Console()
	if len(c) > 3000 {
		c = c[len(c)-3000:]
	}
	if c == "" {
		return ""
	}
	return "\nlab console:\n" + c
}

func (l *Lab) stderrTail() string {
	if t, ok := l.cmd.Stderr.(*tail); ok && len(t.b) > 0 {
		return "\nQEMU: " + strings.TrimSpace(string(t.b))
	}
	return ""
}

// tail keeps the last max bytes written.
type tail struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

// Quote quotes s for the lab's shell.
func Quote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// QuoteArgs quotes each argument and joins them into one command line.
func QuoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}
