package acpi

import (
	"encoding/binary"
)

// A small AML encoder: just the terms the DSDT needs (ACPI 6.5, chapter 20).

// pkg prefixes body with its PkgLength encoding (which counts itself).
func pkg(body []byte) []byte {
	n := len(body)
	switch {
	case n+1 < 1<<6:
		return append([]byte{byte(n + 1)}, body...)
	case n+2 < 1<<12:
		t := n + 2
		return append([]byte{byte(1<<6 | t&0xf), byte(t >> 4)}, body...)
	case n+3 < 1<<20:
		t := n + 3
		return append([]byte{byte(2<<6 | t&0xf), byte(t >> 4), byte(t >> 12)}, body...)
	default:
		t := n + 4
		return append([]byte{byte(3<<6 | t&0xf), byte(t >> 4), byte(t >> 12), byte(t >> 20)}, body...)
	}
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// nameString encodes a root path ("\_SB_") or a single 4-character segment.
func nameString(s string) []byte {
	if len(s) > 0 && s[0] == '\\' {
		return append([]byte{'\\'}, s[1:]...)
	}
	return []byte(s)
}

func scope(path string, terms ...[]byte) []byte {
	return append([]byte{0x10}, pkg(cat(nameString(path), cat(terms...)))...)
}

func device(seg string, terms ...[]byte) []byte {
	return append([]byte{0x5b, 0x82}, pkg(cat([]byte(seg), cat(terms...)))...)
}

func name(seg string, v []byte) []byte { return cat([]byte{0x08}, []byte(seg), v) }

func str(s string) []byte { return cat([]byte{0x0d}, []byte(s), []byte{0}) }

func integer(v uint64) []byte {
	switch {
	case v == 0:
		return []byte{0x00}
	case v == 1:
		return []byte{0x01}
	case v <= 0xff:
		return []byte{0x0a, byte(v)}
	case v <= 0xffff:
		return binary.LittleEndian.AppendUint16([]byte{0x0b}, uint16(v))
	case v <= 0xffffffff:
		return binary.LittleEndian.AppendUint32([]byte{0x0c}, uint32(v))
	}
	return binary.LittleEndian.AppendUint64([]byte{0x0e}, v)
}

// eisaID compresses "PNP0501" into the 32-bit EISA ID integer.
func eisaID(id string) []byte {
	c := func(i int) uint32 { return uint32(id[i]-0x40) & 0x1f }
	hex := func(i int) uint32 {
		ch := id[i]
		switch {
		case ch >= '0' && ch <= '9':
			return uint32(ch - '0')
		case ch >= 'A' && ch <= 'F':
			return uint32(ch - 'A' + 10)
		}
		return 0
	}
	vendor := c(0)<<10 | c(1)<<5 | c(2)
	product := hex(3)<<12 | hex(4)<<8 | hex(5)<<4 | hex(6)
	b := []byte{0x0c, byte(vendor >> 8), byte(vendor), byte(product >> 8), byte(product)}
	return b
}

// resources wraps resource descriptors in a Buffer with an end tag.
func resources(descs ...[]byte) []byte {
	body := append(cat(descs...), 0x79, 0x00)
	return append([]byte{0x11}, pkg(cat(integer(uint64(len(body))), body))...)
}

func ioPort(base uint16, n byte) []byte {
	return []byte{0x47, 0x01, byte(base), byte(base >> 8), byte(base), byte(base >> 8), 1, n}
}

func irqNoFlags(irq uint) []byte {
	m := uint16(1) << irq
	return []byte{0x22, byte(m), byte(m >> 8)}
}

func memory32Fixed(base, size uint32) []byte {
	b := []byte{0x86, 9, 0, 0x01} // read-write
	b = binary.LittleEndian.AppendUint32(b, base)
	return binary.LittleEndian.AppendUint32(b, size)
}

// extInterrupt is Interrupt(ResourceConsumer, Level, ActiveHigh, Exclusive) {irq}.
func extInterrupt(irq uint32) []byte {
	b := []byte{0x89, 6, 0, 0x01, 1}
	return binary.LittleEndian.AppendUint32(b, irq)
}

// pkgOf is Package () {elements...}.
func pkgOf(elems ...[]byte) []byte {
	return append([]byte{0x12}, pkg(cat([]byte{byte(len(elems))}, cat(elems...)))...)
}
