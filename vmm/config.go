package vmm

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"time"

	"github.com/vmconv/vmconv/disk"
)

// Disk is one guest disk, in the VM's order (the first is vda).
type Disk struct {
	ID     string
	Format string
	Image  disk.Image
	// Digest is the image's content digest, carried into the report when the
	// caller has it (disk.Digest).
	Digest string
}

// Config describes one boot.
type Config struct {
	// Kernel is an ELF vmlinux or a bzImage: bytes, or a path in KernelPath.
	Kernel     []byte
	KernelPath string
	Initrd     []byte
	InitrdPath string
	Cmdline    string
	CPUs       int   // capped at the host's cores; 0 means 1
	MemoryMiB  int64 // 0 means 512
	Disks      []Disk
	// Console receives the guest's serial output as it arrives (may be nil).
	Console io.Writer
	// Stdin feeds the serial port in Boot.
	Stdin io.Reader
	// Expect is the success marker (nil: a login prompt or systemd's target).
	Expect  *regexp.Regexp
	Timeout time.Duration // 0 means 5 minutes
	// Overlaid says the Disks are the caller's own writable copy-on-write
	// overlays (disk.Overlay): the guest writes into them, and the caller
	// keeps what it wrote (vmconv fix). By default each disk gets an
	// overlay of its own, discarded at the end.
	Overlaid bool
}

const (
	minMemoryMiB = 32
	maxMemoryMiB = 1 << 20
)

func (c *Config) normalize() error {
	if c.Kernel == nil {
		if c.KernelPath == "" {
			return fmt.Errorf("vmm: no kernel given")
		}
		b, err := os.ReadFile(c.KernelPath)
		if err != nil {
			return fmt.Errorf("vmm: kernel: %w", err)
		}
		c.Kernel = b
	}
	if c.Initrd == nil && c.InitrdPath != "" {
		b, err := os.ReadFile(c.InitrdPath)
		if err != nil {
			return fmt.Errorf("vmm: initrd: %w", err)
		}
		c.Initrd = b
	}
	if c.CPUs <= 0 {
		c.CPUs = 1
	}
	if n := runtime.NumCPU(); c.CPUs > n {
		c.CPUs = n
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = 512
	}
	if c.MemoryMiB < minMemoryMiB || c.MemoryMiB > maxMemoryMiB {
		return fmt.Errorf("vmm: memory %d MiB outside %d..%d", c.MemoryMiB, minMemoryMiB, maxMemoryMiB)
	}
	if len(c.Disks) > len(virtioIRQs) {
		return fmt.Errorf("vmm: %d disks, at most %d", len(c.Disks), len(virtioIRQs))
	}
	for i, d := range c.Disks {
		if d.Image == nil {
			return fmt.Errorf("vmm: disk %d (%s) has no image", i, d.ID)
		}
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Minute
	}
	return nil
}
