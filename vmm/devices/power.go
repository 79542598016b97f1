package devices

// SleepControl is the hardware-reduced ACPI sleep control register (and the
// status register after it) as the FADT describes them: a guest entering S5
// (soft-off) writes SLP_TYP 5 with SLP_EN, which ends the run through off.
type SleepControl struct {
	off func()
}

// NewSleepControl returns the register pair; off is called on power-off.
func NewSleepControl(off func()) *SleepControl { return &SleepControl{off: off} }

const (
	slpEn    = 1 << 5
	slpTypS5 = 5
)

// Read implements Device: nothing is ever pending.
func (s *SleepControl) Read(off uint64, p []byte) {
	for i := range p {
		p[i] = 0
	}
}

// Write implements Device.
func (s *SleepControl) Write(off uint64, p []byte) {
	if off != 0 || len(p) == 0 {
		return
	}
	if v := p[0]; v&slpEn != 0 && v>>2&7 == slpTypS5 && s.off != nil {
		s.off()
	}
}
