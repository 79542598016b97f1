package devices

import (
	"sync"
	"time"
)

// RTC is a small MC146818 CMOS clock at ports 0x70 (index) and 0x71 (data),
// reporting the host's UTC time in BCD, 24-hour mode. Register A never shows
// update-in-progress, so a kernel reading the clock never waits on it.
type RTC struct {
	mu    sync.Mutex
	now   func() time.Time
	index byte
	cmos  [128]byte
}

// NewRTC returns a clock; now may be nil for time.Now.
func NewRTC(now func() time.Time) *RTC {
	if now == nil {
		now = time.Now
	}
	r := &RTC{now: now}
	r.cmos[0x0a] = 0x26 // 32.768 kHz divider, 1024 Hz rate, UIP clear
	r.cmos[0x0b] = 0x02 // 24-hour, BCD
	r.cmos[0x0d] = 0x80 // RAM and time valid
	return r
}

func bcd(v int) byte { return byte(v/10<<4 | v%10) }

// Read implements Device.
func (r *RTC) Read(off uint64, p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range p {
		p[i] = 0
	}
	if len(p) == 0 || off != 1 {
		return
	}
	t := r.now().UTC()
	var v byte
	switch r.index {
	case 0x00:
		v = bcd(t.Second())
	case 0x02:
		v = bcd(t.Minute())
	case 0x04:
		v = bcd(t.Hour())
	case 0x06:
		v = bcd(int(t.Weekday()) + 1)
	case 0x07:
		v = bcd(t.Day())
	case 0x08:
		v = bcd(int(t.Month()))
	case 0x09:
		v = bcd(t.Year() % 100)
	case 0x32:
		v = bcd(t.Year() / 100)
	case 0x0a:
		v = r.cmos[0x0a] &^ 0x80
	case 0x0c:
		v = 0 // no interrupt flags; reading clears them
	default:
		v = r.cmos[r.index]
	}
	p[0] = v
}

// Write implements Device.
func (r *RTC) Write(off uint64, p []byte) {
	if len(p) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch off {
	case 0:
		r.index = p[0] & 0x7f // bit 7 is the NMI mask
	case 1:
		switch r.index {
		case 0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32, 0x0c, 0x0d:
			// The clock follows the host; writes to time and status are ignored.
		case 0x0a:
			r.cmos[0x0a] = p[0] &^ 0x80
		default:
			r.cmos[r.index] = p[0]
		}
	}
}
