// Package verdict decides from a guest's serial console whether it booted: a
// Watcher is fed console bytes as they arrive and settles on pass (the expected
// marker appeared) or fail (a panic, a missing root, an emergency shell) at the
// first line that decides it. Report is the JSON form of one verification.
package verdict

import (
	"bytes"
	"regexp"
	"sync"
)

// DefaultExpect matches a login prompt or systemd reaching a default target.
var DefaultExpect = regexp.MustCompile(`login:|Reached target .*(Multi-User System|Graphical Interface)`)

// failPattern is one console line pattern that means the boot failed.
type failPattern struct {
	re     *regexp.Regexp
	reason string
	// prompt patterns are complete even at the end of an unterminated line;
	// others may still grow and wait for more bytes.
	prompt bool
}

var failPatterns = []failPattern{
	{regexp.MustCompile(`Kernel panic - not syncing[^\r\n]*|Kernel panic[^\r\n]*`), "kernel panic", false},
	{regexp.MustCompile(`VFS: Unable to mount root[^\r\n]*`), "root filesystem not mounted", false},
	{regexp.MustCompile(`Gave up waiting for root[^\r\n]*`), "root device not found", false},
	{regexp.MustCompile(`You are in emergency mode[^\r\n]*|Entering emergency mode[^\r\n]*`), "emergency shell", false},
	{regexp.MustCompile(`You are in rescue mode[^\r\n]*|Entering rescue mode[^\r\n]*`), "rescue shell", false},
	{regexp.MustCompile(`Give root password for maintenance`), "emergency shell", true},
	{regexp.MustCompile(`^\(initramfs\)`), "initramfs shell", true},
}

const (
	// TailSize bounds the console kept for the report.
	TailSize = 64 << 10
	// lineMax bounds the pending partial line a marker is searched in, so a
	// guest that never prints a newline cannot grow it without limit.
	lineMax = 4 << 10
)

// Result is a decision.
type Result struct {
	Pass   bool
	Reason string
	// Marker is the console text that decided.
	Marker string
}

// Watcher is an io.Writer fed with console output. It is safe for concurrent
// use. Once decided, the decision never changes; output is still kept in the tail.
type Watcher struct {
	mu      sync.Mutex
	expect  *regexp.Regexp
	line    []byte // current, unterminated line (bounded)
	tail    []byte // last TailSize bytes of console
	res     Result
	decided bool
}

// New returns a watcher for expect; nil means DefaultExpect.
func New(expect *regexp.Regexp) *Watcher {
	if expect == nil {
		expect = DefaultExpect
	}
	return &Watcher{expect: expect}
}

// Write feeds console bytes. It never fails.
func (w *Watcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	w.appendTail(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.line = append(w.line, p...)
			if len(w.line) > lineMax {
				// Keep the end: markers are short.
				w.line = append(w.line[:0], w.line[len(w.line)-lineMax/2:]...)
			}
			// A prompt such as "login: " or "(initramfs) " has no newline.
			w.check(w.line, false)
			break
		}
		w.line = append(w.line, p[:i]...)
		w.check(w.line, true)
		w.line = w.line[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (w *Watcher) appendTail(p []byte) {
	if len(p) >= TailSize {
		w.tail = append(w.tail[:0], p[len(p)-TailSize:]...)
		return
	}
	if over := len(w.tail) + len(p) - TailSize; over > 0 {
		w.tail = append(w.tail[:0], w.tail[over:]...)
	}
	w.tail = append(w.tail, p...)
}

// check looks at one line; complete says whether it ended with a newline.
// On an open line a match that reaches its end may still grow ("probe: done 1"
// before "f"), so it counts only for prompts, which stay open by nature.
func (w *Watcher) check(line []byte, complete bool) {
	if w.decided {
		return
	}
	line = bytes.TrimRight(line, "\r")
	settled := func(loc []int, prompt bool) bool {
		return loc != nil && (complete || prompt || loc[1] < len(line))
	}
	for _, f := range failPatterns {
		// The initramfs prompt is only a prompt while the line is open.
		if complete && f.reason == "initramfs shell" {
			continue
		}
		if loc := f.re.FindIndex(line); settled(loc, f.prompt) {
			w.res = Result{Pass: false, Reason: f.reason, Marker: string(line[loc[0]:loc[1]])}
			w.decided = true
			return
		}
	}
	if loc := w.expect.FindIndex(line); settled(loc, w.expect == DefaultExpect) {
		w.res = Result{Pass: true, Reason: "expected marker seen", Marker: string(line[loc[0]:loc[1]])}
		w.decided = true
	}
}

// Flush treats the pending unterminated line as complete: the console has
// ended (the guest stopped), so what is there is all there will be.
func (w *Watcher) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.line) > 0 {
		w.check(w.line, true)
	}
}

// Decided returns the decision once there is one.
func (w *Watcher) Decided() (Result, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.res, w.decided
}

// Decide records a decision made outside the console (timeout, reset, a
// VMM-side fault) unless the console already decided. It returns the
// decision in force.
func (w *Watcher) Decide(r Result) Result {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.decided {
		w.res, w.decided = r, true
	}
	return w.res
}

// Tail returns the last TailSize bytes of console output.
func (w *Watcher) Tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.tail)
}
