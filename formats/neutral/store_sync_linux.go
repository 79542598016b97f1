package neutral

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// syncStoreDir makes the chunk files written into dir durable, with their
// names: one syncfs(2) of the filesystem holding it, instead of an fsync of
// every chunk file and directory (a 1 TB disk has a million chunks).
func syncStoreDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("chunk store %s: %w", dir, err)
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("chunk store %s: syncfs: %w", dir, err)
	}
	return nil
}
