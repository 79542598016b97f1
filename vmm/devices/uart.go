package devices

import (
	"io"
	"sync"
)

// UART is a 16550A at an ISA port base (8 registers). Output goes to out as
// it is written; input is queued with Input. Transmission is instantaneous,
// so the transmitter is always empty and the THRE interrupt follows every
// write while enabled.
type UART struct {
	mu  sync.Mutex
	out io.Writer
	irq IRQ

	ier, lcr, mcr, scr, fcr byte
	dll, dlm                byte
	rx                      []byte
	thri                    bool // THR-empty interrupt pending
	level                   bool
}

// UART register offsets and bits.
const (
	uartRBR = 0
	uartIER = 1
	uartIIR = 2
	uartLCR = 3
	uartMCR = 4
	uartLSR = 5
	uartMSR = 6
	uartSCR = 7

	ierRDI  = 0x01
	ierTHRI = 0x02
	lcrDLAB = 0x80
	mcrLoop = 0x10
	mcrOut2 = 0x08
	lsrDR   = 0x01
	lsrTHRE = 0x20
	lsrTEMT = 0x40

	rxMax = 4096
)

// NewUART returns a UART writing to out and signalling irq.
func NewUART(out io.Writer, irq IRQ) *UART {
	if out == nil {
		out = io.Discard
	}
	return &UART{out: out, irq: irq, mcr: mcrOut2}
}

// Input queues bytes for the guest to read (dropped beyond a bounded buffer,
// as a real FIFO overruns).
func (u *UART) Input(p []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	room := rxMax - len(u.rx)
	if len(p) > room {
		p = p[:room]
	}
	u.rx = append(u.rx, p...)
	u.update()
}

// iir returns the current interrupt identification (without side effects).
func (u *UART) iir() byte {
	fifo := byte(0)
	if u.fcr&1 != 0 {
		fifo = 0xc0
	}
	switch {
	case u.ier&ierRDI != 0 && len(u.rx) > 0:
		return fifo | 0x04
	case u.ier&ierTHRI != 0 && u.thri:
		return fifo | 0x02
	}
	return fifo | 0x01
}

// update recomputes the interrupt line. OUT2 gates it onto the bus as on a PC.
func (u *UART) update() {
	level := u.iir()&1 == 0 && u.mcr&mcrOut2 != 0
	if level != u.level {
		u.level = level
		if u.irq != nil {
			u.irq(level)
		}
	}
}

// Read implements Device.
func (u *UART) Read(off uint64, p []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i := range p {
		p[i] = 0
	}
	if len(p) == 0 {
		return
	}
	var v byte
	switch off {
	case uartRBR:
		if u.lcr&lcrDLAB != 0 {
			v = u.dll
		} else if len(u.rx) > 0 {
			v = u.rx[0]
			u.rx = u.rx[1:]
		}
	case uartIER:
		if u.lcr&lcrDLAB != 0 {
			v = u.dlm
		} else {
			v = u.ier
		}
	case uartIIR:
		v = u.iir()
		if v&0x0f == 0x02 {
			u.thri = false // reading IIR acknowledges THRE
		}
	case uartLCR:
		v = u.lcr
	case uartMCR:
		v = u.mcr
	case uartLSR:
		v = lsrTHRE | lsrTEMT
		if len(u.rx) > 0 {
			v |= lsrDR
		}
	case uartMSR:
		if u.mcr&mcrLoop != 0 {
			// Loopback: DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD.
			m := u.mcr
			v = (m&0x01)<<5 | (m&0x02)<<3 | (m&0x04)<<4 | (m&0x08)<<4
		} else {
			v = 0xb0 // DCD, DSR, CTS
		}
	case uartSCR:
		v = u.scr
	}
	p[0] = v
	u.update()
}

// Write implements Device.
func (u *UART) Write(off uint64, p []byte) {
	if len(p) == 0 {
		return
	}
	v := p[0]
	u.mu.Lock()
	var out []byte
	switch off {
	case uartRBR:
		if u.lcr&lcrDLAB != 0 {
			u.dll = v
		} else if u.mcr&mcrLoop != 0 {
			if len(u.rx) < rxMax {
				u.rx = append(u.rx, v)
			}
			u.thri = true
		} else {
			out = []byte{v}
			u.thri = true
		}
	case uartIER:
		if u.lcr&lcrDLAB != 0 {
			u.dlm = v
		} else {
			if v&ierTHRI != 0 && u.ier&ierTHRI == 0 {
				u.thri = true // enabling THRI with an empty THR raises it
			}
			u.ier = v & 0x0f
		}
	case uartIIR:
		u.fcr = v
		if v&0x02 != 0 {
			u.rx = u.rx[:0]
		}
	case uartLCR:
		u.lcr = v
	case uartMCR:
		u.mcr = v & 0x1f
	case uartSCR:
		u.scr = v
	}
	u.update()
	u.mu.Unlock()
	if out != nil {
		// Outside the lock: the console writer may be slow.
		u.out.Write(out)
	}
}
