package vmm

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/vmm/guest"
	"github.com/vmconv/vmconv/vmm/kvm"
	"github.com/vmconv/vmconv/vmm/loader"
)

func TestMemoryLayoutAndE820(t *testing.T) {
	l := memoryLayout(256)
	require.Equal(t, []guest.Layout{{GPA: 0, Size: 256 << 20}}, l)
	assert.Equal(t, []loader.E820Entry{
		{Addr: 0, Size: 0x9fc00, Type: loader.E820RAM},
		{Addr: 0x9fc00, Size: 0x60400, Type: loader.E820Reserved},
		{Addr: 0x100000, Size: 255 << 20, Type: loader.E820RAM},
	}, e820Map(l))
	// Above the 3 GiB gap, the rest of RAM goes above 4 GiB.
	l = memoryLayout(4096)
	require.Equal(t, []guest.Layout{{GPA: 0, Size: 3 << 30}, {GPA: 4 << 30, Size: 1 << 30}}, l)
	e := e820Map(l)
	assert.Equal(t, loader.E820Entry{Addr: 4 << 30, Size: 1 << 30, Type: loader.E820RAM}, e[3])
	// No RAM overlaps the virtio windows, the IOAPIC or the LAPIC.
	for _, r := range l {
		for _, a := range []uint64{virtioBase, ioapicAddr, lapicAddr, tssAddr} {
			assert.False(t, a >= r.GPA && a < r.GPA+r.Size, "%#x inside RAM", a)
		}
	}
}

func TestCPUID(t *testing.T) {
	sup := []kvm.CPUIDEntry{
		{Function: 1, EBX: 0xff00aa55, ECX: 0x1},
		{Function: 7, EDX: 1<<29 | 1},
		{Function: 0xa, EAX: 0x7300403},
		{Function: 0xb, Index: 0, EDX: 9},
	}
	got := vcpuCPUID(sup, 3, 4)
	find := func(f uint32) kvm.CPUIDEntry {
		for _, e := range got {
			if e.Function == f {
				return e
			}
		}
		t.Fatalf("no leaf %#x", f)
		return kvm.CPUIDEntry{}
	}
	l1 := find(1)
	assert.Equal(t, uint32(3), l1.EBX>>24, "initial APIC ID")
	assert.Equal(t, uint32(4), l1.EBX>>16&0xff, "logical processors")
	assert.Equal(t, uint32(0xaa55), l1.EBX&0xffff, "other fields kept")
	assert.NotZero(t, l1.ECX&(1<<31), "hypervisor bit")
	assert.Zero(t, find(7).EDX&(1<<29), "ARCH_CAPABILITIES hidden")
	assert.Equal(t, uint32(1), find(7).EDX&1)
	assert.Zero(t, find(0xa).EAX, "no PMU")
	assert.Equal(t, uint32(3), find(0xb).EDX)
	s := find(0x40000000)
	var b [12]byte
	binary.LittleEndian.PutUint32(b[0:], s.EBX)
	binary.LittleEndian.PutUint32(b[4:], s.ECX)
	binary.LittleEndian.PutUint32(b[8:], s.EDX)
	assert.Equal(t, "KVMKVMKVM\x00\x00\x00", string(b[:]))
	assert.GreaterOrEqual(t, s.EAX, uint32(0x40000001))
	f := find(0x40000001)
	assert.NotZero(t, f.EAX&kvmFeatureClocksource2, "kvm-clock")
	assert.NotZero(t, f.EAX&kvmFeaturePVEOI, "PV EOI")

	// KVM's own paravirt leaves are kept as reported.
	got = vcpuCPUID(append(sup, kvm.CPUIDEntry{Function: 0x40000001, EAX: 0x1234}), 0, 1)
	n := 0
	for _, e := range got {
		if e.Function == 0x40000001 {
			n++
			assert.Equal(t, uint32(0x1234), e.EAX)
		}
	}
	assert.Equal(t, 1, n)
}

func TestPageTablesAndGDT(t *testing.T) {
	mem, err := guest.Map([]guest.Layout{{GPA: 0, Size: 1 << 20}})
	require.NoError(t, err)
	defer mem.Close()
	m := &machine{mem: mem}
	require.NoError(t, m.writePageTables())
	// Walk the tables for a few addresses: identity-mapped with 2 MiB pages.
	walk := func(va uint64) uint64 {
		pml4, _ := mem.Uint64(pml4Addr + 8*(va>>39&511))
		require.NotZero(t, pml4&1)
		pdpt, _ := mem.Uint64(pml4&^0xfff + 8*(va>>30&511))
		require.NotZero(t, pdpt&1)
		pd, _ := mem.Uint64(pdpt&^0xfff + 8*(va>>21&511))
		require.Equal(t, uint64(0x83), pd&0x83, "present, writable, 2 MiB")
		return pd&^0x1fffff + va&0x1fffff
	}
	for _, va := range []uint64{0, 0x1000000, 0x7fffffff, 0xd0000123, 0xfec00000, 0xfee000f0, 0xffffffff} {
		assert.Equal(t, va, walk(va))
	}
	code, _ := mem.Uint64(gdtAddr + 0x10)
	assert.NotZero(t, code&(1<<53), "selector 0x10 is 64-bit code")
	data, _ := mem.Uint64(gdtAddr + 0x18)
	assert.Equal(t, uint64(0x93), data>>40&0xff, "selector 0x18 is writable data")
}

func TestWithConsole(t *testing.T) {
	assert.Equal(t, "console=ttyS0 root=/dev/vda1 ro", withConsole("root=/dev/vda1 ro"))
	assert.Equal(t, "console=ttyS0", withConsole(""))
	assert.Equal(t, "root=/dev/vda1 console=hvc0", withConsole("root=/dev/vda1 console=hvc0"))
	assert.Equal(t, "netconsole=x console=ttyS0,115200", withConsole("netconsole=x console=ttyS0,115200"))
	assert.Equal(t, "console=ttyS0 netconsole=x", withConsole("netconsole=x"))
}
