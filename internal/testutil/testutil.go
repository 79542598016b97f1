// Package testutil holds helpers shared by the project's tests.
package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
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

// GuestDir is where testdata/guest/build.sh caches the real Debian guest built
// from the script's current contents, keyed by its hash
// (VMCONV_GUEST_DIR overrides). repoRoot is the path of the repository's top.
// The directory may not exist yet.
func GuestDir(repoRoot string) (string, error) {
	if d := os.Getenv("VMCONV_GUEST_DIR"); d != "" {
		return d, nil
	}
	return scriptCache(repoRoot, "build.sh", "guest")
}

// scriptCache is ${XDG_CACHE_HOME:-$HOME/.cache}/vmconv/<sub>/<hash>, where
// a script of testdata/guest caches what it builds: the hash is the first
// 16 hex digits of the script's SHA-256, so that editing it rebuilds.
func scriptCache(repoRoot, script, sub string) (string, error) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "guest", script))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "vmconv", sub, hex.EncodeToString(sum[:])[:16]), nil
}
