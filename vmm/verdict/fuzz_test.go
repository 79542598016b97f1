package verdict

import (
	"regexp"
	"testing"
)

// FuzzWatcher feeds arbitrary console bytes (the guest controls them) in
// arbitrary pieces: no panic, bounded memory, and a decision once made stays.
func FuzzWatcher(f *testing.F) {
	f.Add([]byte("host login: "), uint8(3))
	f.Add([]byte("Kernel panic - not syncing: x\n"), uint8(1))
	f.Add([]byte("(initramfs) "), uint8(7))
	f.Fuzz(func(t *testing.T, b []byte, step uint8) {
		for _, w := range []*Watcher{New(nil), New(regexp.MustCompile(`done [0-9]+`))} {
			s := int(step%32) + 1
			var first Result
			var had bool
			for i := 0; i < len(b); i += s {
				w.Write(b[i:min(i+s, len(b))])
				r, ok := w.Decided()
				if had && (!ok || r != first) {
					t.Fatalf("decision changed from %+v to %+v", first, r)
				}
				if ok && !had {
					first, had = r, true
				}
			}
			if len(w.Tail()) > TailSize || len(w.line) > lineMax {
				t.Fatal("unbounded")
			}
		}
	})
}
