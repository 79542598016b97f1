package ovf

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmconv/vmconv/disk"
)

func addDescriptorSeeds(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.ovf")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	// A small OVA: descriptor, manifest, a raw "disk".
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	desc := []byte(`<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">` +
		`<References><File ovf:href="d.img" ovf:id="f1"/></References><DiskSection><Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="1024" ovf:format="http://en.wikipedia.org/wiki/Byte"/></DiskSection>` +
		`<VirtualSystem ovf:id="v"><VirtualHardwareSection><Item><ResourceType>17</ResourceType><HostResource>ovf:/disk/d1</HostResource></Item></VirtualHardwareSection></VirtualSystem></Envelope>`)
	for _, m := range []struct {
		n string
		d []byte
	}{{"a.ovf", desc}, {"a.mf", []byte("SHA256(d.img)= " + strings.Repeat("00", 32) + "\n")}, {"d.img", bytes.Repeat([]byte{1}, 1024)}} {
		tw.WriteHeader(&tar.Header{Name: m.n, Size: int64(len(m.d)), Mode: 0o644, Typeflag: tar.TypeReg})
		tw.Write(m.d)
	}
	tw.Close()
	f.Add(b.Bytes())
	f.Add([]byte(`<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><VirtualSystem><VirtualHardwareSection>` +
		`<Item><ResourceType>4</ResourceType><VirtualQuantity>99999999999999</VirtualQuantity><AllocationUnits>byte * 2^60</AllocationUnits></Item>` +
		`</VirtualHardwareSection></VirtualSystem></Envelope>`))
}

// FuzzOVF: a descriptor never panics the reader; one that maps to a VM is
// written as a descriptor again, which maps to the same hardware.
func FuzzOVF(f *testing.F) {
	addDescriptorSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		DetectDescriptor(data)
		IsOVA(data)
		streamAll(data)
		env, err := Parse("fuzz.ovf", data)
		if err != nil {
			return
		}
		mp, err := ToVM(env, "fuzz.ovf")
		if err != nil {
			return
		}
		vm := mp.VM
		files := make([]PackageFile, len(vm.Disks))
		for i, d := range vm.Disks {
			if d.Device == "disk" {
				files[i] = PackageFile{Name: "d" + string(rune('a'+i%26)) + ".vmdk", Size: 1}
			}
		}
		desc, err := descriptor(vm, files, 14)
		if err != nil {
			t.Fatalf("a VM read from a descriptor cannot be written: %v", err)
		}
		env2, err := Parse("again.ovf", desc)
		if err != nil {
			t.Fatalf("written descriptor does not parse: %v\n%s", err, desc)
		}
		mp2, err := ToVM(env2, "again.ovf")
		if err != nil {
			t.Fatalf("written descriptor does not map: %v\n%s", err, desc)
		}
		a, b := vm, mp2.VM
		if a.CPUs != b.CPUs || a.CoresPerSocket != b.CoresPerSocket || a.MemoryMiB != b.MemoryMiB || a.Firmware != b.Firmware ||
			len(a.Disks) != len(b.Disks) || len(a.NICs) != len(b.NICs) {
			t.Fatalf("hardware changed: %+v\nbecame %+v\n%s", a, b, desc)
		}
		for i := range a.NICs {
			if a.NICs[i].MAC != b.NICs[i].MAC {
				t.Fatalf("nic %d: MAC %q became %q", i, a.NICs[i].MAC, b.NICs[i].MAC)
			}
		}
		for i := range a.Disks {
			if a.Disks[i].Device != b.Disks[i].Device || (a.Disks[i].Device == "disk" && a.Disks[i].CapacityBytes != b.Disks[i].CapacityBytes) {
				t.Fatalf("drive %d: %+v became %+v", i, a.Disks[i], b.Disks[i])
			}
		}
	})
}

// FuzzManifest: a manifest never panics the parser; every digest it
// accepts checks its own file and refuses another.
func FuzzManifest(f *testing.F) {
	f.Add([]byte("SHA256(a.ovf)= 0000000000000000000000000000000000000000000000000000000000000000\n"))
	f.Add([]byte("SHA1 (disk.vmdk) = da39a3ee5e6b4b0d3255bfef95601890afd80709\r\nSHA512(x)= " + strings.Repeat("ab", 64) + "\n"))
	f.Add([]byte("SHA256(a b(c).iso)= e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\n"))
	f.Add([]byte("MD5(x)= 00\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest("fuzz.mf", data)
		if err != nil {
			return
		}
		for _, n := range m.Order {
			e := m.Entries[n]
			h := newHash(e.Algo)
			if h.Size() != len(e.Digest) {
				t.Fatalf("%s: %s digest of %d bytes", n, e.Algo, len(e.Digest))
			}
			if err := m.Verify(n, bytes.NewReader(nil)); err == nil {
				h.Write(nil)
				if !bytes.Equal(h.Sum(nil), e.Digest) {
					t.Fatalf("%s: a wrong digest passed", n)
				}
			}
			if err := m.Verify(n, io.LimitReader(zeros{}, 3)); err == nil && bytes.Equal(e.Digest, sumOf(e.Algo, nil)) {
				t.Fatalf("%s: two contents passed one digest", n)
			}
		}
		// What we write parses back the same.
		sums := map[string][]byte{}
		var names []string
		for _, n := range m.Order {
			if m.Entries[n].Algo == "SHA256" && !strings.ContainsAny(n, "\r\n") && strings.TrimSpace(n) == n && n != "" {
				sums[n] = m.Entries[n].Digest
				names = append(names, n)
			}
		}
		again, err := ParseManifest("again.mf", FormatManifest(names, sums))
		if err != nil {
			t.Fatalf("written manifest does not parse: %v", err)
		}
		for _, n := range names {
			if !bytes.Equal(again.Entries[n].Digest, sums[n]) {
				t.Fatalf("%q: digest changed", n)
			}
		}
	})
}

// streamAll reads data as an OVA from a pipe, every disk to its end; a
// raw disk is read as it is, any other through a reader that drains it.
func streamAll(data []byte) {
	s, err := NewStreamReader(bytes.NewReader(data), "fuzz.ova", Disks{OpenStream: func(r io.Reader, _ string) (disk.Stream, error) {
		return &rawStream{r: r, size: 1 << 20}, nil
	}})
	if err != nil {
		return
	}
	defer s.Close()
	for i := 0; i < 100; i++ {
		_, st, err := s.NextDisk()
		if err != nil {
			return
		}
		for {
			if _, _, err := st.Next(); err != nil {
				break
			}
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func sumOf(algo string, data []byte) []byte {
	h := newHash(algo)
	h.Write(data)
	return h.Sum(nil)
}
