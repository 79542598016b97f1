package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/stretchr/testify/assert"

	"github.com/vmconv/vmconv/fix/initfix"
	"github.com/vmconv/vmconv/internal/testutil"
	"github.com/vmconv/vmconv/vmm/lab"
)

// withLab stops the KVM lab, if the scripts started one, once the tests end.
type withLab struct{ m *testing.M }

func (w withLab) Run() int { return lab.Main(w.m) }

func TestMain(m *testing.M) {
	if initfix.Active() {
		initfix.Main() // the test binary is the fixer's /init in the fix scripts
	}
	testscript.Main(withLab{m}, map[string]func(){
		"vmconv": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

func TestScripts(t *testing.T) { testscript.Run(t, scriptParams("testdata/script")) }

// TestLabScripts runs the scripts that boot guests in the built-in machine
// (the `lab` command). They run after TestScripts, on their own, because
// in the KVM lab they share this machine's cores with nothing else.
func TestLabScripts(t *testing.T) { testscript.Run(t, scriptParams("testdata/lab")) }

// TestLabLongScripts boots more guests in the built-in machine (the wild
// guests, the fixer): each boot in the KVM lab is a minute or more and
// exposed to the lab's emulation faults, so they run on request, with
// VMCONV_LAB_LONG=1 (the same stories run in the QEMU engine by TestScripts).
func TestLabLongScripts(t *testing.T) {
	if os.Getenv("VMCONV_LAB_LONG") == "" {
		t.Skip("long lab runs: set VMCONV_LAB_LONG=1")
	}
	testscript.Run(t, scriptParams("testdata/lab-long"))
}

func scriptParams(dir string) testscript.Params {
	return testscript.Params{
		Dir: dir,
		Setup: func(env *testscript.Env) error {
			env.Setenv(testutil.StrictEnv, os.Getenv(testutil.StrictEnv))
			env.Setenv("GUEST", guestDir())
			// The wild guests of testdata/guest/build-wild.sh.
			for name, variant := range wildVariants {
				env.Setenv(name, wildDir(variant))
			}
			repo, err := filepath.Abs("../..")
			if err != nil {
				return err
			}
			env.Setenv("REPO", repo)
			env.Setenv("HOME", os.Getenv("HOME"))
			return nil
		},
		Condition: condition,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mkraw":   cmdMkraw,
			"lab":     cmdLab,
			"seaweed": cmdSeaweed,
			"filesize": func(ts *testscript.TestScript, neg bool, args []string) {
				// filesize FILE OP N: compare a file's apparent size.
				if len(args) != 3 {
					ts.Fatalf("usage: filesize FILE lt|le|eq|gt N")
				}
				fi, err := os.Stat(ts.MkAbs(args[0]))
				ts.Check(err)
				n, err := strconv.ParseInt(args[2], 0, 64)
				ts.Check(err)
				ok := map[string]bool{"lt": fi.Size() < n, "le": fi.Size() <= n, "eq": fi.Size() == n, "gt": fi.Size() > n}[args[1]]
				if ok == neg {
					ts.Fatalf("size of %s is %d; want %s %d", args[0], fi.Size(), args[1], n)
				}
			},
		},
	}
}

// guestDir is where the real Debian guest is cached, or "" when unknown.
func guestDir() string {
	d, _ := testutil.GuestDir("../..")
	return d
}

// wildVariants are the wild guests' variants by the script variable that
// holds each one's directory.
var wildVariants = map[string]string{"WILD_XFS": "xfs-lvm-efi", "WILD_BTRFS": "btrfs", "WILD_BROKEN": "broken", "WILD_DRACUT": "dracut-lvm"}

// wildDir is where a wild guest is cached, or "" when unknown.
func wildDir(variant string) string {
	d, _ := testutil.WildGuestDir("../..", variant)
	return d
}

// condition answers [have:TOOL] (TOOL installed), [guest] (the real
// Debian guest is built), [wild:VARIANT] (that wild guest is built) and
// [weed] (SeaweedFS is built). Any missing is an error, failing the script,
// when the strict environment variable is set.
func condition(cond string) (bool, error) {
	if cond == "weed" {
		return haveWeed()
	}
	if variant, ok := strings.CutPrefix(cond, "wild:"); ok {
		if _, err := os.Stat(filepath.Join(wildDir(variant), "guest.vmx")); err != nil {
			if testutil.Strict() {
				return false, fmt.Errorf("the %s guest is not built (run testdata/guest/build-wild.sh %s) and %s is set", variant, variant, testutil.StrictEnv)
			}
			return false, nil
		}
		return true, nil
	}
	if cond == "guest" {
		if _, err := os.Stat(filepath.Join(guestDir(), "guest.vmx")); err != nil {
			if testutil.Strict() {
				return false, fmt.Errorf("the Debian guest is not built (run testdata/guest/build.sh) and %s is set", testutil.StrictEnv)
			}
			return false, nil
		}
		return true, nil
	}
	return haveTool(cond)
}

// haveTool is the script condition [have:TOOL]: true when TOOL is installed.
// A missing tool is an error (the script fails) when the strict environment
// variable is set, so "[!have:qemu-img] skip" never skips in CI.
func haveTool(cond string) (bool, error) {
	tool, ok := strings.CutPrefix(cond, "have:")
	if !ok {
		return false, fmt.Errorf("unknown condition %q", cond)
	}
	if _, err := exec.LookPath(tool); err != nil {
		if testutil.Strict() {
			return false, fmt.Errorf("%s is not installed (and %s is set)", tool, testutil.StrictEnv)
		}
		return false, nil
	}
	return true, nil
}

// cmdMkraw writes a sparse raw image: mkraw FILE SIZE [OFFSET:LENGTH[:SEED]]...
// Each run is filled with pseudo-random non-zero bytes.
func cmdMkraw(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: mkraw FILE SIZE [OFF:LEN[:SEED]]...")
	}
	size, err := parseSize(args[1])
	ts.Check(err)
	f, err := os.Create(ts.MkAbs(args[0]))
	ts.Check(err)
	defer f.Close()
	ts.Check(f.Truncate(size))
	for i, run := range args[2:] {
		parts := strings.Split(run, ":")
		if len(parts) < 2 {
			ts.Fatalf("run %q: want OFF:LEN[:SEED]", run)
		}
		off, err := parseSize(parts[0])
		ts.Check(err)
		n, err := parseSize(parts[1])
		ts.Check(err)
		seed := uint64(i + 1)
		if len(parts) > 2 {
			seed, err = strconv.ParseUint(parts[2], 10, 64)
			ts.Check(err)
		}
		r := rand.New(rand.NewPCG(seed, 42))
		buf := make([]byte, n)
		for j := range buf {
			buf[j] = byte(r.IntN(255) + 1)
		}
		_, err = f.WriteAt(buf, off)
		ts.Check(err)
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	return n * mult, nil
}

// cmdLab runs a command where guests boot on hardware virtualization: in
// the KVM lab when this host has no hardware-backed /dev/kvm (the lab
// shares the host's files, so $WORK is the same there), else right here.
// Its stdout and stderr together become the script's stdout.
//
//	lab vmconv verify --engine builtin guest.xva
func cmdLab(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: lab COMMAND [ARG...]")
	}
	if !lab.Needed() {
		err := ts.Exec(args[0], args[1:]...)
		if (err != nil) != neg {
			ts.Fatalf("%s: %v (want failure: %v)", args[0], err, neg)
		}
		return
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if ts.Getenv(k) == "" {
			env = append(env, kv)
		}
	}
	for _, k := range []string{"PATH", "HOME", "WORK", "GUEST", "REPO", testutil.StrictEnv} {
		env = append(env, k+"="+ts.Getenv(k))
	}
	const attempts = 3
	for attempt := 1; ; attempt++ {
		var out bytes.Buffer
		code, err := lab.RunShared(context.Background(), &out, ts.Getenv("WORK"), env, args)
		// The lab's emulated AMD-V sometimes faults a nested guest that
		// is sound (a triple fault, a vCPU that stops: see README, Tests):
		// a boot expected to pass that ends so is run again, up to three
		// times in all, each time in a new lab, since the fault may have
		// left the old one's KVM unsound. Only the last run's output is
		// the script's stdout, which its assertions read; the faulted
		// runs' goes to its stderr, for the log.
		rep := verifyReport(out.Bytes())
		retry := err == nil && code != 0 && !neg && attempt < attempts && lab.GuestFault(rep.Reason, rep.Console)
		if !retry {
			ts.Stdout().Write(out.Bytes())
			ts.Check(err)
		} else {
			ts.Stderr().Write(out.Bytes())
			fmt.Fprintf(ts.Stderr(), "lab: the nested guest faulted (%s); running the command again in a new lab (attempt %d of %d)\n",
				rep.Reason, attempt+1, attempts)
			_, err := lab.Renew()
			ts.Check(err)
			continue
		}
		if (code != 0) != neg {
			ts.Fatalf("%s exited with status %d in the lab", args[0], code)
		}
		return
	}
}

// verifyReport reads the reason and console of the JSON report a lab
// command printed (vmconv verify --output json); empty when there is none.
func verifyReport(out []byte) (rep struct{ Reason, Console string }) {
	if i := bytes.IndexByte(out, '{'); i >= 0 {
		_ = json.NewDecoder(bytes.NewReader(out[i:])).Decode(&rep)
	}
	return rep
}

// The lab harness reads a verify report out of a lab command's output.
func TestVerifyReport(t *testing.T) {
	out := []byte("lab: the lab died during the command; running it again\n{\n  \"result\": \"fail\",\n  \"reason\": \"kernel panic\",\n  \"console\": \"Kernel panic - not syncing\"\n}\n")
	rep := verifyReport(out)
	assert.Equal(t, "kernel panic", rep.Reason)
	assert.Equal(t, "Kernel panic - not syncing", rep.Console)
	assert.Empty(t, verifyReport([]byte("no report here\n")).Reason)
}
