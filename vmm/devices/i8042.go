package devices

import "sync"

// I8042 is the keyboard controller reduced to what a kernel needs for
// reboot=k: a status register, the command byte, self test, and command
// 0xFE (pulse the reset line), which ends the run through reset. It sits at
// ports 0x60..0x64 (offset 0 data, offset 4 status/command).
type I8042 struct {
	mu     sync.Mutex
	reset  func()
	ctr    byte
	out    byte
	hasOut bool
	// pending is the command whose data byte comes next on port 0x60.
	pending byte
}

// NewI8042 returns a controller calling reset when the guest pulses reset.
func NewI8042(reset func()) *I8042 { return &I8042{reset: reset, ctr: 0x00} }

// Read implements Device.
func (k *I8042) Read(off uint64, p []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := range p {
		p[i] = 0
	}
	if len(p) == 0 {
		return
	}
	switch off {
	case 0:
		p[0] = k.out
		k.hasOut = false
	case 4:
		st := byte(0x04) // system flag: self test passed
		if k.hasOut {
			st |= 0x01
		}
		p[0] = st
	}
}

func (k *I8042) reply(v byte) { k.out, k.hasOut = v, true }

// Write implements Device.
func (k *I8042) Write(off uint64, p []byte) {
	if len(p) == 0 {
		return
	}
	v := p[0]
	k.mu.Lock()
	var doReset bool
	switch off {
	case 0:
		if k.pending == 0x60 {
			k.ctr = v
		}
		k.pending = 0
	case 4:
		switch v {
		case 0x20:
			k.reply(k.ctr)
		case 0x60:
			k.pending = v
		case 0xaa:
			k.reply(0x55)
		case 0xab:
			k.reply(0x00)
		case 0xfe:
			doReset = true
		}
	}
	k.mu.Unlock()
	if doReset && k.reset != nil {
		k.reset()
	}
}
