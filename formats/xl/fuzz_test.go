package xl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzXL: a file never panics the parser or the mapping; one that maps to
// a VM is written as an xl.cfg again, which maps to the same VM.
func FuzzXL(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.cfg")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("name = 'a'\ndisk = [ 'format=raw, vdev=xvda, access=rw, target=/x, y', ',hdc:cdrom,r' ]\nvif = [ '' ]\nextra += 'x'\n"))
	f.Add([]byte("name=\"q\\\"\\x41\\101\";vcpus=0x10;maxvcpus=16\ncpus=[[1,2],[3]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		Detect(data)
		file, err := Parse("fuzz.cfg", data)
		if err != nil {
			return
		}
		vm, specs, err := ToVM(file)
		if err != nil {
			return
		}
		for _, s := range specs {
			if strings.ContainsAny(s.Target, "\x00") {
				return
			}
		}
		vdevs := planVdevs(vm)
		paths := make([]string, len(vm.Disks))
		for i, s := range specs {
			if s.Target != "" || vm.Disks[i].Device == "disk" {
				paths[i] = "/srv/" + vdevs[i] + ".img"
			}
		}
		text, err := FromVM(vm, vdevs, paths, "raw")
		if err != nil {
			return
		}
		again, err := Parse("again.cfg", text)
		if err != nil {
			t.Fatalf("written file does not parse: %v\n%s", err, text)
		}
		vm2, _, err := ToVM(again)
		if err != nil {
			t.Fatalf("written file does not map: %v\n%s", err, text)
		}
		if vm.CPUs != vm2.CPUs || vm.MemoryMiB != vm2.MemoryMiB || vm.Firmware != vm2.Firmware ||
			len(vm.Disks) != len(vm2.Disks) || len(vm.NICs) != len(vm2.NICs) {
			t.Fatalf("VM changed:\n%+v\n%+v\n%s", vm, vm2, text)
		}
		if !strings.ContainsFunc(vm.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }) && vm.Name != vm2.Name {
			t.Fatalf("name %q became %q", vm.Name, vm2.Name)
		}
		for i := range vm.Disks {
			if vm.Disks[i].ID != vm2.Disks[i].ID || vm.Disks[i].Device != vm2.Disks[i].Device || vm.Disks[i].ReadOnly != vm2.Disks[i].ReadOnly {
				t.Fatalf("drive %d: %+v became %+v\n%s", i, vm.Disks[i], vm2.Disks[i], text)
			}
		}
		for i := range vm.NICs {
			if vm.NICs[i].MAC != vm2.NICs[i].MAC {
				t.Fatalf("nic %d: %q became %q\n%s", i, vm.NICs[i].MAC, vm2.NICs[i].MAC, text)
			}
		}
	})
}
