package vmm

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestHostKind(t *testing.T) {
	amd := "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr pae svm lm\n"
	intel := "flags\t\t: fpu vmx ept\n"
	none := "flags\t\t: fpu vme de pse tsc msr pae hypervisor lm\n"
	tests := []struct {
		name    string
		dev     bool
		cpuinfo string
		pvm     bool
		want    string
	}{
		{"no device", false, amd, false, HostNone},
		{"svm", true, amd, false, HostHardware},
		{"vmx", true, intel, false, HostHardware},
		{"pvm module", true, none, true, HostPVM},
		{"neither", true, none, false, HostEmulated},
		{"flag word inside another line does not count", true, "model name\t: svm-like\n" + none, false, HostEmulated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, hostKind(tc.dev, tc.cpuinfo, tc.pvm))
		})
	}
	// This host, whatever it is, gives one of the four answers.
	assert.Contains(t, []string{HostHardware, HostPVM, HostEmulated, HostNone}, HostKind())
}
