package devices

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func rd(d Device, off uint64) byte {
	p := []byte{0}
	d.Read(off, p)
	return p[0]
}

func wr(d Device, off uint64, v byte) { d.Write(off, []byte{v}) }

func TestBus(t *testing.T) {
	var b Bus
	u := NewUART(nil, nil)
	require.NoError(t, b.Register("uart", 0x3f8, 8, u))
	require.Error(t, b.Register("other", 0x3fc, 8, &PCIHost{}), "overlap refused")
	require.Error(t, b.Register("wrap", ^uint64(0)-1, 8, &PCIHost{}))
	require.NoError(t, b.Register("pci", 0xcf8, 8, &PCIHost{}))
	p := []byte{0}
	assert.True(t, b.Read(0x3fd, p))
	assert.Equal(t, byte(0x60), p[0])
	assert.False(t, b.Read(0x3f0, p))
	assert.Equal(t, byte(0xff), p[0], "unclaimed ports read all ones")
	q := make([]byte, 4)
	assert.False(t, b.Read(0x3fe, q), "an access running past a device's window is not claimed")
}

// TestUART8250Probe follows the steps of Linux's 8250 autoconfig and console.
func TestUART8250Probe(t *testing.T) {
	var out bytes.Buffer
	var levels []bool
	u := NewUART(&out, func(l bool) { levels = append(levels, l) })
	// Scratch and IER tests.
	wr(u, uartSCR, 0xa5)
	assert.Equal(t, byte(0xa5), rd(u, uartSCR))
	wr(u, uartIER, 0)
	assert.Equal(t, byte(0), rd(u, uartIER)&0x0f)
	wr(u, uartIER, 0x0f)
	assert.Equal(t, byte(0x0f), rd(u, uartIER))
	wr(u, uartIER, 0)
	// Loopback test: MCR = LOOP|0x0a reads MSR 0x90.
	wr(u, uartMCR, mcrLoop|0x0a)
	assert.Equal(t, byte(0x90), rd(u, uartMSR)&0xf0)
	wr(u, uartMCR, mcrOut2|0x03)
	// FIFO enabled → IIR says 16550A (bits 7:6 set).
	wr(u, uartIIR, 0x07)
	assert.Equal(t, byte(0xc1), rd(u, uartIIR))
	// Divisor latch does not disturb IER.
	wr(u, uartLCR, lcrDLAB|3)
	wr(u, uartRBR, 1)
	wr(u, uartIER, 0)
	assert.Equal(t, byte(1), rd(u, uartRBR))
	wr(u, uartLCR, 3)
	assert.Equal(t, byte(0), rd(u, uartIER))
	levels = nil
	// Output.
	for _, c := range []byte("hi\n") {
		assert.NotZero(t, rd(u, uartLSR)&lsrTHRE)
		wr(u, uartRBR, c)
	}
	assert.Equal(t, "hi\n", out.String())
	assert.Empty(t, levels)
	// THRE interrupt: enabling it raises the line; reading IIR acknowledges.
	wr(u, uartIER, ierTHRI)
	require.Equal(t, []bool{true}, levels)
	assert.Equal(t, byte(0xc2), rd(u, uartIIR))
	assert.Equal(t, []bool{true, false}, levels)
	assert.Equal(t, byte(0xc1), rd(u, uartIIR))
	wr(u, uartRBR, 'x')
	assert.Equal(t, []bool{true, false, true}, levels)
	wr(u, uartIER, 0)
	assert.Equal(t, []bool{true, false, true, false}, levels)
	// Input with RX interrupts.
	wr(u, uartIER, ierRDI)
	u.Input([]byte("ab"))
	assert.Equal(t, true, levels[len(levels)-1])
	assert.Equal(t, byte(0xc4), rd(u, uartIIR))
	assert.NotZero(t, rd(u, uartLSR)&lsrDR)
	assert.Equal(t, byte('a'), rd(u, uartRBR))
	assert.Equal(t, byte('b'), rd(u, uartRBR))
	assert.Zero(t, rd(u, uartLSR)&lsrDR)
	assert.Equal(t, false, levels[len(levels)-1])
	// A flood of input is bounded.
	u.Input(make([]byte, 3*rxMax))
	assert.Len(t, u.rx, rxMax)
	// Odd widths and offsets never panic.
	u.Read(9, nil)
	u.Write(3, nil)
	u.Read(100, make([]byte, 4))
}

func TestI8042Reset(t *testing.T) {
	resets := 0
	k := NewI8042(func() { resets++ })
	assert.Zero(t, rd(k, 4)&0x02, "input buffer empty")
	wr(k, 4, 0xaa)
	assert.Equal(t, byte(0x01), rd(k, 4)&0x01)
	assert.Equal(t, byte(0x55), rd(k, 0))
	wr(k, 4, 0x60)
	wr(k, 0, 0x47)
	wr(k, 4, 0x20)
	assert.Equal(t, byte(0x47), rd(k, 0))
	assert.Zero(t, resets)
	wr(k, 4, 0xfe)
	assert.Equal(t, 1, resets)
}

func TestRTC(t *testing.T) {
	now := time.Date(2026, 11, 26, 23, 59, 58, 0, time.UTC)
	r := NewRTC(func() time.Time { return now })
	get := func(i byte) byte { wr(r, 0, i|0x80); return rd(r, 1) }
	for i := 0; i < 100; i++ {
		require.Zero(t, get(0x0a)&0x80, "UIP never set")
	}
	assert.Equal(t, byte(0x58), get(0))
	assert.Equal(t, byte(0x59), get(2))
	assert.Equal(t, byte(0x23), get(4))
	assert.Equal(t, byte(0x26), get(7))
	assert.Equal(t, byte(0x11), get(8))
	assert.Equal(t, byte(0x26), get(9))
	assert.Equal(t, byte(0x20), get(0x32))
	assert.Equal(t, byte(0x02), get(0x0b))
	assert.Equal(t, byte(0x80), get(0x0d))
	wr(r, 0, 0x40)
	wr(r, 1, 0x77)
	assert.Equal(t, byte(0x77), get(0x40), "CMOS RAM keeps values")
	wr(r, 0, 0x00)
	wr(r, 1, 0x11)
	assert.Equal(t, byte(0x58), get(0), "time follows the host")
}

func TestPCIHostBridge(t *testing.T) {
	h := &PCIHost{}
	cfg := func(addr uint32, off uint64, n int) []byte {
		a := make([]byte, 4)
		binary.LittleEndian.PutUint32(a, addr)
		h.Write(0, a)
		got := make([]byte, n)
		h.Read(4+off, got)
		return got
	}
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	tests := []struct {
		name string
		addr uint32
		off  uint64
		n    int
		want []byte
	}{
		{"bridge vendor and device", 0x80000000, 0, 4, le32(0x00081b36)},
		{"bridge vendor alone", 0x80000000, 0, 2, []byte{0x36, 0x1b}},
		{"bridge device, high half", 0x80000000, 2, 2, []byte{0x08, 0x00}},
		{"bridge class: host bridge", 0x80000008, 0, 4, le32(0x06000000)},
		{"bridge class byte", 0x80000008, 3, 1, []byte{0x06}},
		{"bridge header type 0, single function", 0x8000000c, 2, 1, []byte{0}},
		{"bridge BAR0 absent", 0x80000010, 0, 4, le32(0)},
		{"no device at 00:01.0", 0x80000800, 0, 4, le32(0xffffffff)},
		{"no function 00:00.1", 0x80000100, 0, 2, []byte{0xff, 0xff}},
		{"no bus 1", 0x80010000, 0, 4, le32(0xffffffff)},
		{"configuration cycles disabled", 0x00000000, 0, 4, le32(0xffffffff)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, cfg(tc.addr, tc.off, tc.n))
		})
	}
	a := le32(0x80000000)
	h.Write(0, a)
	got := make([]byte, 4)
	h.Read(0, got)
	assert.Equal(t, a, got, "the address register reads back (the kernel's type-1 check)")
	h.Write(4, le32(0x12345678))
	assert.Equal(t, le32(0x00081b36), cfg(0x80000000, 0, 4), "configuration space is read-only")
}

func TestSleepControl(t *testing.T) {
	offs := 0
	s := NewSleepControl(func() { offs++ })
	wr(s, 0, 5<<2)       // type without SLP_EN
	wr(s, 1, 5<<2|slpEn) // the status register
	wr(s, 0, 3<<2|slpEn) // S3 is not off
	assert.Zero(t, offs)
	wr(s, 0, 5<<2|slpEn)
	assert.Equal(t, 1, offs)
	assert.Zero(t, rd(s, 1))
}
