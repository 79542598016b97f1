package fix

import (
	"testing"
)

// FuzzParseConsole: whatever the guest prints, reading it back never
// panics and never returns more than MaxResults results.
func FuzzParseConsole(f *testing.F) {
	f.Add([]byte(Begin + "\n" + string(FormatResult(Result{Step: StepDeviceNames, OK: true, Changed: []string{"/etc/fstab:2: /dev/sda1 -> UUID=x"}})) + End + "\n"))
	f.Add([]byte("[    1.0] Kernel panic - not syncing\n" + Begin + "\r\n" + Prefix + "{\"step\":\n"))
	f.Add([]byte(Begin + "\n" + Prefix + `{"step":"initramfs","ok":false,"output":"\u0000\ud800"}` + "\n" + End))
	f.Fuzz(func(t *testing.T, console []byte) {
		rs, _ := ParseConsole(console)
		if len(rs) > MaxResults {
			t.Fatalf("%d results", len(rs))
		}
	})
}
