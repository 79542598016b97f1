package devices

import (
	"io"
	"testing"
	"time"
)

// FuzzPortIO plays an arbitrary sequence of port reads and writes, of every
// access size, at the legacy devices as the machine places them (serial
// console, i8042, RTC, PCI host bridge, ACPI sleep control): a guest
// poking at ports gets answers, never a panic, and a read no device claims
// (past a window's end, straddling it) reads as all ones.
func FuzzPortIO(f *testing.F) {
	// Each access is 4 bytes: the device's window, the offset into it, the
	// size (bits 1..) and direction (bit 0: write), the value's first byte.
	f.Add([]byte{
		0, 0x03, 1, 0x80, // uart LCR: DLAB on
		0, 0x00, 1, 0x01, // divisor low
		0, 0x03, 1, 0x03, // 8N1
		0, 0x00, 1, 'x', // THR
		0, 0x05, 0, 0, // LSR read
		1, 0x04, 1, 0xfe, // i8042 command: reset
		2, 0x00, 1, 0x8a, // RTC index, NMI bit
		2, 0x01, 0, 0, // RTC data
		3, 0x00, 5, 0x80, // PCI address, 4 bytes
		3, 0x04, 4, 0, // PCI data, 4-byte read
		3, 0x06, 2, 0, // PCI data, 2-byte read at +2
		4, 0x00, 3, 0x20, // sleep control, 2-byte write
	})
	f.Add([]byte{3, 0x00, 5, 0xff, 3, 0x07, 0, 0, 3, 0x01, 4, 0, 0, 0x07, 1, 0x55, 0, 0x07, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var bus Bus
		windows := []struct {
			base, size uint64
			dev        Device
		}{
			{0x3f8, 8, NewUART(io.Discard, func(bool) {})},
			{0x60, 5, NewI8042(func() {})},
			{0x70, 2, NewRTC(func() time.Time { return time.Unix(1700000000, 0) })},
			{0xcf8, 8, &PCIHost{}},
			{0x600, 2, NewSleepControl(func() {})},
		}
		for _, w := range windows {
			if err := bus.Register("dev", w.base, w.size, w.dev); err != nil {
				t.Fatal(err)
			}
		}
		for len(ops) >= 4 {
			w := windows[int(ops[0])%len(windows)]
			addr := w.base + uint64(ops[1]%16) // also past the window's end
			size := []int{1, 2, 4}[int(ops[2]>>1)%3]
			p := make([]byte, size)
			for i := range p {
				p[i] = ops[3] + byte(i)
			}
			if ops[2]&1 == 1 {
				bus.Write(addr, p)
			} else {
				if !bus.Read(addr, p) {
					for _, b := range p {
						if b != 0xff {
							t.Fatalf("unclaimed read at %#x of %d bytes gave %x", addr, size, p)
						}
					}
				}
			}
			ops = ops[4:]
		}
	})
}
