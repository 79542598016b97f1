package nbd

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// isStaleSocket reports whether path is a Unix socket nobody listens on.
func isStaleSocket(path string) bool {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return false
	}
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

func removeSocket(path string) error { return os.Remove(path) }
