package vmm

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/vmconv/vmconv/vmm/devices"
)

func TestStdinEscape(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		guest string
		quit  bool
	}{
		{"plain keys", "ls -l\r", "ls -l\r", false},
		{"ctrl-a x quits", "abc\x01xdef", "abc", true},
		{"ctrl-a X quits", "\x01X", "", true},
		{"ctrl-a ctrl-a sends one", "a\x01\x01b", "a\x01b", false},
		{"ctrl-a other key passes the key", "\x01c", "c", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			m := &machine{stopCh: make(chan struct{})}
			m.uart = devices.NewUART(&out, nil)
			m.feedStdin(strings.NewReader(tc.in))
			assert.Equal(t, tc.quit, m.stopped.Load())
			// Read back what the guest would receive.
			var got []byte
			for {
				lsr := []byte{0}
				m.uart.Read(5, lsr)
				if lsr[0]&1 == 0 {
					break
				}
				b := []byte{0}
				m.uart.Read(0, b)
				got = append(got, b[0])
			}
			assert.Equal(t, tc.guest, string(got))
		})
	}
}
