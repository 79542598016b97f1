package vmx

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmconv/vmconv/formats/neutral"
)

func addSeeds(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.vmx")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(".encoding = \"windows-1252\"\ndisplayName = \"Caf\xe9|7C\"\n"))
	f.Add([]byte("a = \"1\"\nA = \"2\"\n"))
	f.Add([]byte("x = \"unterminated\n"))
	f.Add([]byte("bios.hddOrder = \"scsi0:1,ide0:0\"\nscsi0.present = \"TRUE\"\nscsi0:1.present = \"TRUE\"\nscsi0:1.fileName = \"a.vmdk\"\n"))
}

// FuzzParse: never a panic; what parses marshals to text that parses back
// to the same entries.
func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(bytes.NewReader(data), "fuzz.vmx")
		if err != nil {
			return
		}
		text := file.Marshal()
		again, err := Parse(bytes.NewReader(text), "fuzz.vmx")
		if err != nil {
			t.Fatalf("marshalled text does not parse: %v\n%q", err, text)
		}
		a, b := file.Entries(), again.Entries()
		if len(a) != len(b) {
			t.Fatalf("%d entries, %d after marshal", len(a), len(b))
		}
		for i := range a {
			if a[i].Key != b[i].Key || a[i].Value != b[i].Value {
				t.Fatalf("entry %d: %q=%q became %q=%q", i, a[i].Key, a[i].Value, b[i].Key, b[i].Value)
			}
		}
		Detect(data)
	})
}

// FuzzToVM: a file that maps to a VM is written back, and the written file
// maps to the same VM.
func FuzzToVM(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(bytes.NewReader(data), "fuzz.vmx")
		if err != nil {
			return
		}
		vm, err := ToVM(file)
		if err != nil {
			return
		}
		out, err := FromVM(vm, "fuzz", WriteOptions{})
		if err != nil {
			t.Fatalf("a VM read from a .vmx cannot be written: %v", err)
		}
		back, err := ToVM(out)
		if err != nil {
			t.Fatalf("written .vmx does not map: %v\n%s", err, out.Marshal())
		}
		strip := func(v *neutral.VM) neutral.VM {
			c := *v
			c.Extensions = neutral.Extensions{}
			return c
		}
		a, b := strip(vm), strip(back)
		if a.GuestOS == "" && len(vm.Extensions.VMware) == 0 {
			a.GuestOS = "other-64" // what a VM from elsewhere gets
		}
		if a.Name != b.Name || a.UUID != b.UUID || a.Firmware != b.Firmware || a.CPUs != b.CPUs ||
			a.CoresPerSocket != b.CoresPerSocket || a.MemoryMiB != b.MemoryMiB || a.GuestOS != b.GuestOS ||
			len(a.Disks) != len(b.Disks) || len(a.NICs) != len(b.NICs) {
			t.Fatalf("VM changed on the way back:\n%+v\n%+v\n%s", a, b, out.Marshal())
		}
		for i := range a.Disks {
			if a.Disks[i] != b.Disks[i] {
				t.Fatalf("disk %d: %+v became %+v\n%s", i, a.Disks[i], b.Disks[i], out.Marshal())
			}
		}
		for i := range a.NICs {
			if a.NICs[i] != b.NICs[i] {
				t.Fatalf("nic %d: %+v became %+v\n%s", i, a.NICs[i], b.NICs[i], out.Marshal())
			}
		}
	})
}
