// Package acpi writes the machine's ACPI tables: RSDP, XSDT, a
// hardware-reduced FADT, a MADT announcing the vCPUs and the IOAPIC, and a
// DSDT describing the UART and one LNRO0005 device per virtio-mmio transport
// (the only way a distribution kernel finds virtio-mmio devices). The AML is
// produced by the small encoder in aml.go.
package acpi

import (
	"encoding/binary"
	"fmt"
)

// MMIODevice is one virtio-mmio transport.
type MMIODevice struct {
	Base, Size uint64
	IRQ        uint32
}

// Config is what the tables describe.
type Config struct {
	CPUs       int
	IOAPICAddr uint32
	LAPICAddr  uint32
	UART       bool // COM1 at 0x3f8, IRQ 4
	// SleepPort, when set, is the I/O port of the hardware-reduced sleep
	// control register (status at SleepPort+1): a guest powering off writes
	// SLP_TYP 5 with SLP_EN there. _S5 is described in the DSDT.
	SleepPort uint16
	Virtio    []MMIODevice
}

// Table is one table with its guest physical address.
type Table struct {
	Signature string
	Addr      uint64
	Data      []byte
}

// Tables is a laid-out set: Blob goes at Base; RSDP is its first table.
type Tables struct {
	Base   uint64
	Blob   []byte
	RSDP   uint64
	Tables []Table
}

const (
	oemID      = "VMCONV"
	oemTableID = "VMCONVVM"
	creatorID  = "VMCV"
)

func header(sig string, length int, rev byte) []byte {
	b := make([]byte, length)
	copy(b, sig)
	binary.LittleEndian.PutUint32(b[4:], uint32(length))
	b[8] = rev
	copy(b[10:], oemID)
	copy(b[16:], oemTableID)
	binary.LittleEndian.PutUint32(b[24:], 1)
	copy(b[28:], creatorID)
	binary.LittleEndian.PutUint32(b[32:], 1)
	return b
}

func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

func seal(b []byte) []byte {
	b[9] = 0
	b[9] = checksum(b)
	return b
}

// Build lays the tables out from base (16-byte aligned).
func Build(base uint64, c Config) (*Tables, error) {
	if c.CPUs < 1 || c.CPUs > 255 {
		return nil, fmt.Errorf("acpi: %d CPUs, want 1..255", c.CPUs)
	}
	if c.IOAPICAddr == 0 {
		c.IOAPICAddr = 0xfec00000
	}
	if c.LAPICAddr == 0 {
		c.LAPICAddr = 0xfee00000
	}
	dsdt, err := buildDSDT(c)
	if err != nil {
		return nil, err
	}
	madt := buildMADT(c)
	t := &Tables{Base: base}
	align := func(n int) int { return (n + 15) &^ 15 }
	// Layout: RSDP, XSDT (2 entries), FADT, MADT, DSDT.
	rsdpOff := 0
	xsdtOff := align(rsdpOff + 36)
	fadtOff := align(xsdtOff + 36 + 16)
	madtOff := align(fadtOff + 276)
	dsdtOff := align(madtOff + len(madt))
	end := dsdtOff + len(dsdt)
	at := func(off int) uint64 { return base + uint64(off) }

	fadt := header("FACP", 276, 6)
	le := binary.LittleEndian
	le.PutUint32(fadt[40:], uint32(at(dsdtOff)))
	le.PutUint16(fadt[109:], 1<<2)  // IAPC_BOOT_ARCH: VGA not present
	le.PutUint32(fadt[112:], 1<<20) // HW_REDUCED_ACPI
	fadt[131] = 5                   // FADT minor version (6.5)
	le.PutUint64(fadt[140:], at(dsdtOff))
	copy(fadt[268:], "VMCONVVM") // hypervisor vendor identity
	if c.SleepPort != 0 {
		gas := func(off int, port uint16) {
			fadt[off] = 1   // system I/O space
			fadt[off+1] = 8 // bit width
			fadt[off+3] = 1 // byte access
			le.PutUint64(fadt[off+4:], uint64(port))
		}
		gas(244, c.SleepPort)   // SLEEP_CONTROL_REG
		gas(256, c.SleepPort+1) // SLEEP_STATUS_REG
	}
	seal(fadt)

	xsdt := header("XSDT", 36+16, 1)
	le.PutUint64(xsdt[36:], at(fadtOff))
	le.PutUint64(xsdt[44:], at(madtOff))
	seal(xsdt)

	rsdp := make([]byte, 36)
	copy(rsdp, "RSD PTR ")
	copy(rsdp[9:], oemID)
	rsdp[15] = 2
	le.PutUint32(rsdp[20:], 36)
	le.PutUint64(rsdp[24:], at(xsdtOff))
	rsdp[8] = checksum(rsdp[:20])
	rsdp[32] = checksum(rsdp)

	t.Blob = make([]byte, end)
	for _, x := range []struct {
		sig string
		off int
		b   []byte
	}{{"RSDP", rsdpOff, rsdp}, {"XSDT", xsdtOff, xsdt}, {"FACP", fadtOff, fadt}, {"APIC", madtOff, madt}, {"DSDT", dsdtOff, dsdt}} {
		copy(t.Blob[x.off:], x.b)
		t.Tables = append(t.Tables, Table{x.sig, at(x.off), x.b})
	}
	t.RSDP = at(rsdpOff)
	return t, nil
}

func buildMADT(c Config) []byte {
	le := binary.LittleEndian
	var e []byte
	for i := 0; i < c.CPUs; i++ {
		e = append(e, 0, 8, byte(i), byte(i), 1, 0, 0, 0) // processor local APIC, enabled
	}
	io := make([]byte, 12)
	io[0], io[1], io[2] = 1, 12, 0
	le.PutUint32(io[4:], c.IOAPICAddr)
	e = append(e, io...)
	// ISA IRQ 0 is wired to IOAPIC pin 2 (as KVM's and every PC's IOAPIC do).
	iso := make([]byte, 10)
	iso[0], iso[1], iso[2], iso[3] = 2, 10, 0, 0
	le.PutUint32(iso[4:], 2)
	e = append(e, iso...)
	// LINT1 of every processor is NMI.
	e = append(e, 4, 6, 0xff, 0, 0, 1)
	m := header("APIC", 44+len(e), 5)
	le.PutUint32(m[36:], c.LAPICAddr)
	le.PutUint32(m[40:], 1) // PCAT_COMPAT: 8259s present
	copy(m[44:], e)
	return seal(m)
}

func buildDSDT(c Config) ([]byte, error) {
	var devs [][]byte
	if c.UART {
		devs = append(devs, device("COM1",
			name("_HID", eisaID("PNP0501")),
			name("_UID", integer(0)),
			name("_CRS", resources(ioPort(0x3f8, 8), irqNoFlags(4)))))
	}
	for i, v := range c.Virtio {
		if v.Base > 0xffffffff || v.Size > 0xffffffff || v.Base+v.Size > 1<<32 {
			return nil, fmt.Errorf("acpi: virtio-mmio %d at %#x+%#x is above 4 GiB", i, v.Base, v.Size)
		}
		devs = append(devs, device(fmt.Sprintf("V%03X", i),
			name("_HID", str("LNRO0005")),
			name("_UID", integer(uint64(i))),
			name("_CCA", integer(1)), // cache coherent
			name("_CRS", resources(memory32Fixed(uint32(v.Base), uint32(v.Size)), extInterrupt(v.IRQ)))))
	}
	body := scope("\\_SB_", devs...)
	if c.SleepPort != 0 {
		// \_S5: soft-off is sleep type 5.
		body = append(body, name("_S5_", pkgOf(integer(5), integer(0)))...)
	}
	d := header("DSDT", 36+len(body), 2)
	copy(d[36:], body)
	return seal(d), nil
}
