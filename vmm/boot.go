package vmm

import (
	"context"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// Boot runs the machine interactively: the serial console on cfg.Console
// (default stdout), keys from cfg.Stdin (default stdin, in raw mode when it
// is a terminal). Ctrl-A X quits, as in QEMU; Ctrl-A Ctrl-A sends Ctrl-A.
func Boot(ctx context.Context, cfg Config) error {
	if cfg.Console == nil {
		cfg.Console = os.Stdout
	}
	if cfg.Stdin == nil {
		cfg.Stdin = os.Stdin
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 1 << 62
	}
	if err := cfg.normalize(); err != nil {
		return err
	}
	host := HostKind()
	m, err := newMachine(&cfg, cfg.Console, host)
	if err != nil {
		return err
	}
	defer m.close()
	if f, ok := cfg.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		old, err := term.MakeRaw(int(f.Fd()))
		if err == nil {
			defer term.Restore(int(f.Fd()), old)
		}
	}
	go m.feedStdin(cfg.Stdin)
	res := m.runUntil(ctx, cfg.Timeout)
	if m.why.fault {
		return fmt.Errorf("vmm: %s", res.Reason)
	}
	return nil
}

// feedStdin forwards keys to the UART, handling the Ctrl-A escape.
func (m *machine) feedStdin(r io.Reader) {
	buf := make([]byte, 256)
	esc := false
	for {
		n, err := r.Read(buf)
		var out []byte
		for _, b := range buf[:n] {
			switch {
			case esc && (b == 'x' || b == 'X'):
				if len(out) > 0 {
					m.uart.Input(out)
				}
				m.stop(stopReason{reason: "quit from the console (Ctrl-A X)"})
				return
			case esc:
				esc = false
				out = append(out, b)
			case b == 0x01:
				esc = true
			default:
				out = append(out, b)
			}
		}
		if len(out) > 0 {
			m.uart.Input(out)
		}
		if err != nil {
			return
		}
	}
}
