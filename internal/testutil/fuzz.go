package testutil

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// FuzzTimeout is how long one fuzz input may run before Bounded stops the
// process: far above what any seed takes, so a slow CI machine does not
// trip it, and low enough that the fuzzer reports a hang as a crasher.
const FuzzTimeout = 10 * time.Second

// Bounded runs fn, the work of one fuzz input. It fails t when fn
// allocated more than limit bytes on the heap, and panics (ending the
// fuzzing worker, so the fuzzer keeps the input as a crasher) when fn is
// still running after FuzzTimeout: an allocation sized by an untrusted
// field, or a loop whose length one is, shows up as a failure instead of
// going unnoticed until a real file hits it.
func Bounded(t testing.TB, limit uint64, fn func()) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	timer := time.AfterFunc(FuzzTimeout, func() {
		debug.SetTraceback("all")
		panic(fmt.Sprintf("fuzz input still running after %v: a hang", FuzzTimeout))
	})
	fn()
	timer.Stop()
	runtime.ReadMemStats(&after)
	if a := after.TotalAlloc - before.TotalAlloc; a > limit {
		t.Fatalf("one input allocated %d bytes, more than the bound of %d", a, limit)
	}
}
