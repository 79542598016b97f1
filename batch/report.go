package batch

import (
	"bufio"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// JSONLines writes one JSON object per result, one line each.
type JSONLines struct{ enc *json.Encoder }

// NewJSONLines returns a report writer on w.
func NewJSONLines(w io.Writer) *JSONLines { return &JSONLines{json.NewEncoder(w)} }

// Write writes one record.
func (l *JSONLines) Write(r *Result) error { return l.enc.Encode(r) }

// junitSuites is the JUnit XML that Jenkins and GitLab read.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Classname string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes one testsuite "vmconv.batch" with a testcase per VM.
// A failed or cancelled VM is a <failure>; a VM done before is a passing
// case (skipping it is the batch working, not a test left out).
func WriteJUnit(w io.Writer, results []*Result) error {
	s := junitSuite{Name: "vmconv.batch"}
	var total float64
	for _, r := range results {
		secs := r.ConvertSeconds + r.VerifySeconds
		total += secs
		c := junitCase{Classname: "vmconv.batch", Name: r.Name, Time: seconds(secs)}
		var out strings.Builder
		fmt.Fprintf(&out, "source: %s\noutput: %s\nstate: %s\n", r.Source, r.Output, r.State)
		for _, d := range r.Disks {
			fmt.Fprintf(&out, "disk %s: %s\n", d.ID, d.Digest)
		}
		c.SystemOut = out.String()
		if !r.OK() {
			s.Failures++
			typ := "convert"
			if r.Verify == "fail" {
				typ = "verify"
			} else if r.State == Cancelled {
				typ = "cancelled"
			}
			c.Failure = &junitMessage{Message: r.Error, Type: typ, Text: r.Error}
		}
		s.Tests++
		s.Cases = append(s.Cases, c)
	}
	s.Time = seconds(total)
	bw := bufio.NewWriter(w)
	bw.WriteString(xml.Header)
	enc := xml.NewEncoder(bw)
	enc.Indent("", "  ")
	if err := enc.Encode(junitSuites{Suites: []junitSuite{s}}); err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	bw.WriteString("\n")
	return bw.Flush()
}

func seconds(s float64) string { return strconv.FormatFloat(s, 'f', 3, 64) }

// DefaultParallel is how many VMs run at once when -j is not given: one per
// core, and no more than the host's available memory holds for the boots
// (memMiB each, when the batch verifies), at least one.
func DefaultParallel(jobs []*Job) int {
	n := runtime.NumCPU()
	var perVM int64
	for _, j := range jobs {
		if j.Verify {
			perVM = max(perVM, j.MemoryMiB, 512)
		}
	}
	if avail := availableMiB(); perVM > 0 && avail > 0 {
		n = min(n, int(avail/perVM))
	}
	return max(1, min(n, len(jobs)))
}

// WorkersPerVM shares the cores among the VMs that run at once, so that
// -j 4 on 2 cores runs 4 copy workers, not 8 fighting for 2 cores.
func WorkersPerVM(parallel int) int { return max(1, runtime.NumCPU()/max(parallel, 1)) }

// availableMiB reads MemAvailable from /proc/meminfo; 0 when unknown.
func availableMiB() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb >> 10
			}
		}
	}
	return 0
}
