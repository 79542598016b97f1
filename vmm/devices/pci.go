package devices

import (
	"encoding/binary"
	"sync"
)

// PCIHost answers the type-1 configuration ports 0xCF8..0xCFF: the address
// register reads back (so the kernel finds a host bridge mechanism) and every
// configuration read returns all ones, meaning "no device".
type PCIHost struct {
	mu   sync.Mutex
	addr uint32
}

// Read implements Device.
func (h *PCIHost) Read(off uint64, p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if off == 0 && len(p) == 4 {
		binary.LittleEndian.PutUint32(p, h.addr)
		return
	}
	for i := range p {
		p[i] = 0xff
	}
}

// Write implements Device.
func (h *PCIHost) Write(off uint64, p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if off == 0 && len(p) == 4 {
		h.addr = binary.LittleEndian.Uint32(p)
	}
}
