package kmod

import (
	"strings"
	"testing"
)

// FuzzOrder: a guest's modules.dep and modules.builtin are the guest's to
// write. Whatever they hold, parsing and ordering never panic, and an order
// that succeeds lists each file once, after the files of every dependency
// it has in modules.dep.
func FuzzOrder(f *testing.F) {
	f.Add([]byte(debDep), []byte("kernel/drivers/virtio/virtio_mmio.ko\n"), "ext4 virtio_blk virtio-pci")
	f.Add([]byte("a.ko: b.ko\nb.ko: a.ko\n"), []byte(""), "a")
	f.Add([]byte("a.ko: b.ko c.ko\nb.ko: c.ko\nc.ko:\n"), []byte("d.ko\n"), "a d")
	f.Add([]byte("#x.ko: y.ko\n x.ko :\t\ny/-a-.ko.zst: x.ko\n"), []byte(" x.ko \n"), "_a_ x")
	f.Fuzz(func(t *testing.T, depB, builtinB []byte, want string) {
		dep := ParseDep(depB)
		order, err := Order(dep.Deps, ParseBuiltin(builtinB), strings.Fields(want))
		if err != nil {
			return
		}
		pos := map[string]int{}
		for i, file := range order {
			if _, dup := pos[file]; dup {
				t.Fatalf("%q listed twice in %q", file, order)
			}
			pos[file] = i
		}
		for i, file := range order {
			e, ok := dep[Name(file)]
			if !ok || e.file != file {
				continue // the file of a name modules.dep gives twice: the last one counts
			}
			for _, d := range e.deps {
				de, known := dep[Name(d)]
				if !known {
					continue // built in
				}
				if j, listed := pos[de.file]; !listed || j > i {
					t.Fatalf("%q (needs %q) at %d, its dependency at %d (listed %v) in %q", file, de.file, i, j, listed, order)
				}
			}
		}
	})
}
