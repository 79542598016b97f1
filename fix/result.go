package fix

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// The console protocol: /init writes Begin, one Prefix+JSON line per step
// (a Result), then End once the guest's filesystems are unmounted.
const (
	Prefix = "vmconv-fix: "
	Begin  = Prefix + "begin"
	End    = Prefix + "end"
)

// Result is what one step did.
type Result struct {
	Step    string   `json:"step"`
	OK      bool     `json:"ok"`
	Changed []string `json:"changed,omitempty"` // files written, links made or removed
	Message string   `json:"message,omitempty"`
	// Output is the tail of a guest tool's output (update-initramfs, dracut).
	Output string `json:"output,omitempty"`
	MS     int64  `json:"ms"` // how long the step took in the guest
}

// Bounds on what is read back from the guest's console.
const (
	MaxResults    = 64
	MaxResultLine = 64 << 10
)

// ParseConsole reads the results from the console: the Result lines
// between Begin and End. Other lines (the kernel's) are ignored. A missing
// End, a malformed or overlong line, or too many results is an error that
// names it; the results read so far are returned with it.
func ParseConsole(console []byte) ([]Result, error) {
	var out []Result
	begun := false
	for n, raw := range bytes.Split(console, []byte("\n")) {
		line := strings.TrimRight(string(raw), "\r")
		i := strings.Index(line, Prefix)
		if i < 0 {
			continue
		}
		line = line[i:] // the kernel may have printed on the line before it
		switch {
		case line == Begin:
			begun = true
			continue
		case line == End:
			if !begun {
				return out, fmt.Errorf("fix: console line %d: %q before %q", n+1, End, Begin)
			}
			return out, nil
		case !begun:
			continue
		}
		if len(line) > MaxResultLine {
			return out, fmt.Errorf("fix: console line %d: result longer than %d bytes", n+1, MaxResultLine)
		}
		if len(out) == MaxResults {
			return out, fmt.Errorf("fix: console line %d: more than %d results", n+1, MaxResults)
		}
		var r Result
		dec := json.NewDecoder(strings.NewReader(strings.TrimPrefix(line, Prefix)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil || r.Step == "" {
			if err == nil {
				err = fmt.Errorf("no step named")
			}
			return out, fmt.Errorf("fix: console line %d: malformed result %.80q: %v", n+1, line, err)
		}
		out = append(out, r)
	}
	if !begun {
		return out, fmt.Errorf("fix: the fixer never started (no %q on the console)", Begin)
	}
	return out, fmt.Errorf("fix: the fixer stopped before it finished (no %q on the console)", End)
}

// FormatResult is the console line for r.
func FormatResult(r Result) []byte {
	b, _ := json.Marshal(r) // a Result always marshals
	return append(append([]byte(Prefix), b...), '\n')
}

// limitedBuffer keeps the first max bytes written to it and counts the rest.
type limitedBuffer struct {
	buf     bytes.Buffer
	max     int
	dropped int64
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(room, len(p))])
		l.dropped += int64(len(p) - min(room, len(p)))
	} else {
		l.dropped += int64(len(p))
	}
	return len(p), nil
}
