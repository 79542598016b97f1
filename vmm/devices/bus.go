// Package devices holds the machine's emulated devices and the bus that
// routes port and MMIO accesses to them. Each device sees only offsets into
// its own window and validates everything the guest hands it; none of them
// knows about KVM or the run loop.
package devices

import (
	"fmt"
	"sort"
	"sync"
)

// Device is one unit on a bus. off is relative to the device's base; len(p)
// is the access size. Read fills p; bytes a device does not define read as
// the device chooses (usually zero or all ones).
type Device interface {
	Read(off uint64, p []byte)
	Write(off uint64, p []byte)
}

// IRQ drives one interrupt line. Devices call it only on level changes.
type IRQ func(level bool)

// Fault ends the run because the guest misbehaved; the error names what.
type Fault func(err error)

type busRange struct {
	base, size uint64
	name       string
	dev        Device
}

// Bus maps address ranges (ports or MMIO) to devices. Registration happens
// before the vCPUs start; lookups are concurrent.
type Bus struct {
	mu     sync.RWMutex
	ranges []busRange
}

// Register places dev at [base, base+size). Overlaps are refused.
func (b *Bus) Register(name string, base, size uint64, dev Device) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("bus: %s: bad range %#x+%#x", name, base, size)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.ranges {
		if base < r.base+r.size && r.base < base+size {
			return fmt.Errorf("bus: %s at %#x+%#x overlaps %s at %#x+%#x", name, base, size, r.name, r.base, r.size)
		}
	}
	b.ranges = append(b.ranges, busRange{base, size, name, dev})
	sort.Slice(b.ranges, func(i, j int) bool { return b.ranges[i].base < b.ranges[j].base })
	return nil
}

func (b *Bus) find(addr uint64, n int) (busRange, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	i := sort.Search(len(b.ranges), func(i int) bool { return b.ranges[i].base+b.ranges[i].size > addr })
	if i < len(b.ranges) {
		r := b.ranges[i]
		if addr >= r.base && addr-r.base+uint64(n) <= r.size {
			return r, true
		}
	}
	return busRange{}, false
}

// Read dispatches a read; it reports false (and fills p with all ones, like
// an unclaimed ISA/PCI read) when nothing is there.
func (b *Bus) Read(addr uint64, p []byte) bool {
	r, ok := b.find(addr, len(p))
	if !ok {
		for i := range p {
			p[i] = 0xff
		}
		return false
	}
	r.dev.Read(addr-r.base, p)
	return true
}

// Write dispatches a write; unclaimed writes are dropped.
func (b *Bus) Write(addr uint64, p []byte) bool {
	r, ok := b.find(addr, len(p))
	if !ok {
		return false
	}
	r.dev.Write(addr-r.base, p)
	return true
}
