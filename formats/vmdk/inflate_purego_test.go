//go:build !(cgo && libdeflate)

package vmdk

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/internal/testutil"
)

// TestLibdeflateBuild runs this package's tests again built with
// -tags libdeflate, so that a plain `go test` checks the libdeflate inflater
// against the pure-Go one (TestDecoders*) wherever libdeflate is installed.
func TestLibdeflateBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the package again with cgo")
	}
	goTool := testutil.RequireTool(t, "go")
	env, err := exec.Command(goTool, "env", "CGO_ENABLED", "CC").Output()
	require.NoError(t, err, "go env")
	lines := strings.Split(string(env), "\n")
	if len(lines) < 2 || lines[0] != "1" {
		testutil.Unavailable(t, "cgo is disabled: only the pure-Go inflater can be built")
	}
	if !hasHeader(strings.Fields(lines[1]), "libdeflate.h") {
		testutil.Unavailable(t, "libdeflate is not installed (Debian: libdeflate-dev)")
	}
	out, err := exec.Command(goTool, "test", "-count=1", "-tags", "libdeflate", ".").CombinedOutput()
	require.NoError(t, err, "go test -tags libdeflate:\n%s", out)
}

// hasHeader reports whether the C compiler (command and arguments) finds
// the header.
func hasHeader(cc []string, header string) bool {
	if len(cc) == 0 {
		return false
	}
	cmd := exec.Command(cc[0], append(cc[1:], "-E", "-x", "c", "-")...)
	cmd.Stdin = strings.NewReader("#include <" + header + ">\n")
	return cmd.Run() == nil
}
