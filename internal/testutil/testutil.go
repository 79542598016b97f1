// Package testutil holds helpers shared by the project's tests.
package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// StrictEnv is the environment variable that turns every "tool missing" skip
// into a failure. CI sets it, so a test can never pass by not running.
const StrictEnv = "VMCONV_REQUIRE_TOOLS"

// Strict reports whether missing tools must fail tests.
func Strict() bool { return os.Getenv(StrictEnv) != "" }

// Unavailable skips the test with reason, or fails it when StrictEnv is set.
// Use it for every missing tool, package or file a test depends on.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if Strict() {
		t.Fatalf("%s (and %s is set, so this is a failure, not a skip)", reason, StrictEnv)
	}
	t.Skip(reason)
}

// RequireTool returns the path of an external program, or skips (fails when
// strict) if it is not installed.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, name+" is not installed")
	}
	return p
}

// Run runs a command and fails the test with its output if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// SkipForHost skips a test that needs what this host's /dev/kvm cannot give
// (no /dev/kvm at all, or no hardware virtualization). It is the one skip
// StrictEnv does not turn into a failure: it is a property of the machine,
// not a missing package, and the reason is printed.
func SkipForHost(t testing.TB, reason string) {
	t.Helper()
	t.Skip("host check: " + reason)
}
