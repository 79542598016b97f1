package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmconv/vmconv/internal/testutil"
	"github.com/vmconv/vmconv/vmm/host"
)

// InsideEnv is set (to "1") in the environment of test processes that the
// lab runs, so they run their tests rather than delegate them again.
const InsideEnv = "VMCONV_IN_LAB"

// Inside reports whether this process runs inside the lab.
func Inside() bool { return os.Getenv(InsideEnv) != "" }

// Needed reports whether a test that needs hardware virtualization must run
// in the lab: this host's /dev/kvm is missing or not hardware-backed, and
// this process is not already in the lab.
func Needed() bool { return !Inside() && host.Kind() != host.Hardware }

// shared is the lab of this test process, started on first use.
var shared struct {
	sync.Mutex
	lab *Lab
	err error
}

// Shared returns this process's lab, starting it on first use; a lab that
// cannot start fails the test with the reason (or skips it where tools may
// be missing: see testutil.Unavailable). TestMain must end it with Main.
func Shared(t testing.TB) *Lab {
	t.Helper()
	l, err := Get()
	if err != nil {
		testutil.Unavailable(t, err.Error())
	}
	return l
}

// Get is Shared for callers without a testing.TB (testscript commands).
func Get() (*Lab, error) {
	shared.Lock()
	defer shared.Unlock()
	if shared.lab == nil && shared.err == nil {
		shared.lab, shared.err = Start(context.Background(), Options{})
		if shared.err == nil {
			fmt.Fprintf(os.Stderr, "lab: /dev/kvm ready in %.1f s\n", shared.lab.ReadyIn.Seconds())
		}
	}
	if shared.err != nil {
		return nil, fmt.Errorf("the KVM lab cannot start: %w", shared.err)
	}
	return shared.lab, nil
}

// RunShared runs argv in this process's lab (see Lab.Run). The lab's own
// kernel runs KVM on AMD-V that QEMU emulates, and that emulation can fail
// under it (a kernel oops in svm_vcpu_run has been seen, about once in
// twenty real-guest boots at first, one in three on some days): when the
// lab itself dies during the command, RunShared says so on w and runs the
// command again in a new lab, up to four times in all. A command that fails
// in a lab that lives is not run again.
func RunShared(ctx context.Context, w io.Writer, dir string, env, argv []string) (int, error) {
	const attempts = 4
	l, err := Get()
	for attempt := 1; ; attempt++ {
		if err != nil {
			return -1, err
		}
		code, err := l.Run(ctx, w, dir, env, argv)
		if err == nil || ctx.Err() != nil || !l.exitedNow() || attempt == attempts {
			return code, err
		}
		fmt.Fprintf(w, "\nlab: the lab died during the command; running it again in a new lab. %v\n", err)
		fmt.Fprintf(os.Stderr, "lab: the lab died during %q; restarting it (attempt %d of %d)\n", QuoteArgs(argv), attempt+1, attempts)
		l, err = restart(l)
	}
}

// Renew replaces this process's lab with a new one, for a command that
// ended in a way that may have left the lab's own KVM unsound (a nested
// guest that triple-faulted: a command run again in the same lab has been
// seen to hang with its guest silent).
func Renew() (*Lab, error) {
	shared.Lock()
	old := shared.lab
	shared.Unlock()
	if old == nil {
		return Get()
	}
	return restart(old)
}

// restart replaces a dead shared lab with a new one.
func restart(dead *Lab) (*Lab, error) {
	shared.Lock()
	if shared.lab == dead {
		dead.Close()
		shared.lab, shared.err = nil, nil
	}
	shared.Unlock()
	return Get()
}

// Main runs the tests and then stops the lab if one was started: call it
// from TestMain as os.Exit(lab.Main(m)).
func Main(m interface{ Run() int }) int {
	code := m.Run()
	shared.Lock()
	defer shared.Unlock()
	if shared.lab != nil {
		shared.lab.Close()
		shared.lab = nil
	}
	return code
}

// Delegate runs the calling test in the lab when Needed, and returns true
// once it has: the caller returns at once, and the test's outcome is the
// lab run's (a failure or skip in there is one here). It returns false when
// the test should simply go on here.
//
//	func TestProbeKVM(t *testing.T) {
//		if lab.Delegate(t) {
//			return
//		}
//		...
func Delegate(t *testing.T) bool {
	t.Helper()
	if !Needed() {
		return false
	}
	Shared(t) // a lab that cannot start fails (or, tools missing, skips) the test here
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	timeout := 20 * time.Minute
	if d, ok := t.Deadline(); ok {
		timeout = time.Until(d) - 10*time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	env := append(os.Environ(), InsideEnv+"=1")
	args := []string{exe, "-test.run", RunPattern(t.Name()), "-test.v", "-test.timeout", timeout.Round(time.Second).String()}
	rec := &recorder{w: os.Stdout, name: t.Name()}
	start := time.Now()
	code, err := RunShared(ctx, rec, wd, env, args)
	rec.flush()
	switch {
	case err != nil:
		t.Fatalf("in the lab: %v", err)
	case code != 0:
		t.Fatalf("in the lab: the test failed (exit status %d, %.1f s); its output is above", code, time.Since(start).Seconds())
	case rec.skipped != "":
		t.Skipf("in the lab: %s", rec.skipped)
	case !rec.passed:
		t.Fatalf("in the lab: no \"--- PASS: %s\" line: the test did not run there", t.Name())
	}
	return true
}

// RunPattern is the -test.run pattern that selects exactly the test (or
// subtest) named name.
func RunPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// recorder copies the lab's output, each line marked as the lab's, and
// notes the test's own verdict line.
type recorder struct {
	w       io.Writer
	name    string
	partial []byte
	last    string // the last line before the verdict: a skip's reason
	passed  bool
	skipped string
}

func (r *recorder) Write(p []byte) (int, error) {
	r.partial = append(r.partial, p...)
	for {
		i := strings.IndexByte(string(r.partial), '\n')
		if i < 0 {
			return len(p), nil
		}
		r.line(string(r.partial[:i]))
		r.partial = r.partial[i+1:]
	}
}

func (r *recorder) flush() {
	if len(r.partial) > 0 {
		r.line(string(r.partial))
		r.partial = nil
	}
}

func (r *recorder) line(s string) {
	fmt.Fprintf(r.w, "    lab| %s\n", s)
	t := strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(t, "--- PASS: "+r.name+" "):
		r.passed = true
	case strings.HasPrefix(t, "--- SKIP: "+r.name+" "):
		r.skipped = r.last
	case t != "":
		r.last = t
	}
}

// GuestFault reports whether a failed boot in the lab ended the way the
// lab's emulation ends sound guests (README, Tests): a triple fault, a
// kernel panic (its oops has shown the lab's own GS base), a boot that
// never reached its marker, or an RCU stall on the guest's console. reason
// and console are a verify report's.
func GuestFault(reason, console string) bool {
	return strings.Contains(reason, "KVM_EXIT_SHUTDOWN") || reason == "kernel panic" ||
		strings.HasPrefix(reason, "timeout after ") || strings.Contains(console, "rcu_preempt detected stalls")
}
