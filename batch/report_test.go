package batch

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var sampleResults = []*Result{
	{Name: "web", Source: "/vms/web.vmx", Target: "xva", Output: "/out/web.xva", State: Done, ConvertSeconds: 1.5, VerifySeconds: 61, Verify: "pass",
		Disks: []DiskDigest{{ID: "scsi0:0", Digest: "ab12"}}},
	{Name: "db", Source: "/vms/db.vmx", Target: "vmb", Output: "/out/db.vmb", State: Failed, ConvertSeconds: 0.25, Error: `db.vmx: line 3: "quoted" <bad> & worse`},
	{Name: "old", Source: "/vms/old.vmx", Target: "xva", Output: "/out/old.xva", State: Skipped},
	{Name: "late", Source: "/vms/late.vmx", Target: "xva", Output: "/out/late.xva", State: Cancelled, Error: "not started"},
}

// TestJUnitReadsInPython checks the JUnit file with Python's own XML reader,
// the way CI servers read it: one testsuite, a testcase per VM with
// classname, name and time, a <failure message> for each VM that failed.
func TestJUnitReadsInPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	path := filepath.Join(t.TempDir(), "junit.xml")
	var buf bytes.Buffer
	require.NoError(t, WriteJUnit(&buf, sampleResults))
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
	script := `
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "testsuites", root.tag
suites = root.findall("testsuite")
assert len(suites) == 1
s = suites[0]
print("suite", s.get("name"), s.get("tests"), s.get("failures"), s.get("time"))
for c in s.findall("testcase"):
    f = c.find("failure")
    print("case", c.get("classname"), c.get("name"), c.get("time"), "FAIL " + f.get("message") if f is not None else "ok")
`
	out, err := exec.Command(py, "-c", script, path).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, strings.Join([]string{
		"suite vmconv.batch 4 2 62.750",
		"case vmconv.batch web 62.500 ok",
		`case vmconv.batch db 0.250 FAIL db.vmx: line 3: "quoted" <bad> & worse`,
		"case vmconv.batch old 0.000 ok",
		"case vmconv.batch late 0.000 FAIL not started",
	}, "\n")+"\n", string(out))
}

// TestReportFields pins the JSON-lines field names scripts depend on.
func TestReportFields(t *testing.T) {
	var buf bytes.Buffer
	l := NewJSONLines(&buf)
	for _, r := range sampleResults[:2] {
		require.NoError(t, l.Write(r))
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	var rec map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &rec))
	for _, k := range []string{"name", "source", "target", "output", "state", "disks", "bytes_read", "bytes_written",
		"virtual_bytes", "convert_seconds", "verify_seconds", "verify"} {
		assert.Contains(t, rec, k)
	}
	assert.Equal(t, []any{map[string]any{"id": "scsi0:0", "digest": "ab12"}}, rec["disks"])
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &rec))
	assert.Equal(t, "failed", rec["state"])
	assert.Contains(t, rec["error"], "line 3")
}

func TestDefaultParallel(t *testing.T) {
	jobs := func(n int, verify bool, mem int64) []*Job {
		var out []*Job
		for range n {
			out = append(out, &Job{Verify: verify, MemoryMiB: mem})
		}
		return out
	}
	cores := runtime.NumCPU()
	tests := []struct {
		name string
		jobs []*Job
		want func(n int) bool
	}{
		{"one VM", jobs(1, false, 0), func(n int) bool { return n == 1 }},
		{"no verify: the cores", jobs(64, false, 0), func(n int) bool { return n == cores }},
		{"verify within memory", jobs(64, true, 64), func(n int) bool { return n >= 1 && n <= cores }},
		{"verify needing more than the host has: one at a time", jobs(8, true, 1<<40), func(n int) bool { return n == 1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := DefaultParallel(tc.jobs)
			assert.True(t, tc.want(n), "got %d (cores %d)", n, cores)
		})
	}
	assert.Equal(t, max(1, cores/4), WorkersPerVM(4))
	assert.Equal(t, cores, WorkersPerVM(1))
}
