package devices

import (
	"encoding/binary"
	"sync"
)

// PCIHost answers the type-1 configuration ports 0xCF8..0xCFF with one
// device, a host bridge at 00:00.0, and "no device" (all ones) everywhere
// else. Linux accepts the type-1 mechanism only when its sanity check finds
// a host bridge (or a VGA device) on bus 0 (arch/x86/pci/direct.c); without
// one it logs "PCI: Fatal: No config space access function found". Devices
// stay on virtio-mmio: the bridge has no BARs and nothing behind it.
type PCIHost struct {
	mu   sync.Mutex
	addr uint32
}

// The host bridge's identity: Red Hat's "QEMU PCIe host bridge" IDs, which
// no kernel quirk matches, and the host-bridge class.
const (
	bridgeVendor = 0x1b36
	bridgeDevice = 0x0008
	bridgeClass  = 0x060000 // base class 6 (bridge), subclass 0 (host)
)

// configEnable is bit 31 of the address register: a configuration cycle.
const configEnable = 1 << 31

// Read implements Device: offset 0..3 is the address register, 4..7 the
// data window into the addressed configuration dword.
func (h *PCIHost) Read(off uint64, p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if off == 0 && len(p) == 4 {
		binary.LittleEndian.PutUint32(p, h.addr)
		return
	}
	if off < 4 {
		fill(p, 0xff) // partial reads of the address register: not decoded
		return
	}
	var dw [4]byte
	binary.LittleEndian.PutUint32(dw[:], h.config())
	for i := range p {
		b := int(off-4) + i
		if b < 4 {
			p[i] = dw[b]
		} else {
			p[i] = 0xff
		}
	}
}

// config is the dword the address register selects.
func (h *PCIHost) config() uint32 {
	if h.addr&configEnable == 0 {
		return 0xffffffff
	}
	bus, devfn, reg := (h.addr>>16)&0xff, (h.addr>>8)&0xff, h.addr&0xfc
	if bus != 0 || devfn != 0 {
		return 0xffffffff
	}
	switch reg {
	case 0x00:
		return bridgeDevice<<16 | bridgeVendor
	case 0x08:
		return bridgeClass << 8 // revision 0
	default:
		return 0 // command, status, header type 0, no BARs, no capabilities
	}
}

// Write implements Device: only the address register keeps what is
// written; the bridge's configuration space is read-only.
func (h *PCIHost) Write(off uint64, p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if off == 0 && len(p) == 4 {
		h.addr = binary.LittleEndian.Uint32(p)
	}
}

func fill(p []byte, v byte) {
	for i := range p {
		p[i] = v
	}
}
