package loader

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzLoad feeds arbitrary kernels to the loader: it must return an error or
// a kernel, never panic or allocate without bound. The seeds in
// testdata/fuzz/FuzzLoad are the probe guest as an ELF and as bzImages with
// each compression (the real compressors' output).
func FuzzLoad(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := Load(bytes.NewReader(b), int64(len(b)))
		if err == nil && len(k.Segments) == 0 {
			t.Fatal("kernel without segments")
		}
		// The in-memory loader agrees with the copying one on every input.
		if bytes.HasPrefix(b, []byte("\x7fELF")) {
			kb, errb := LoadELFBytes(b)
			if (err == nil) != (errb == nil) {
				t.Fatalf("LoadELF error %v, LoadELFBytes error %v", err, errb)
			}
			if err == nil && !reflect.DeepEqual(k.Segments, kb.Segments) {
				t.Fatal("LoadELFBytes segments differ from LoadELF's")
			}
		}
	})
}
