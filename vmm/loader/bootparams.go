package loader

import (
	"encoding/binary"
	"fmt"
)

// E820 entry types.
const (
	E820RAM      = 1
	E820Reserved = 2
	E820ACPI     = 3
)

// E820Entry is one entry of the memory map.
type E820Entry struct {
	Addr, Size uint64
	Type       uint32
}

// struct boot_params offsets.
const (
	bpACPIRSDP     = 0x070
	bpExtRamdisk   = 0x0c0
	bpExtRamdiskSz = 0x0c4
	bpExtCmdLine   = 0x0c8
	bpE820Entries  = 0x1e8
	bpRamdiskImage = 0x218
	bpRamdiskSize  = 0x21c
	bpE820Table    = 0x2d0
	e820Max        = 128

	loadedHigh  = 0x01
	canUseHeap  = 0x80
	ZeroPageLen = 4096
)

// BootParams describes what the zero page tells the kernel.
type BootParams struct {
	CmdlineAddr uint64
	CmdlineLen  int
	InitrdAddr  uint64
	InitrdSize  uint64
	E820        []E820Entry
	RSDP        uint64
}

// ZeroPage builds the 4 KiB boot_params for k.
func ZeroPage(k *Kernel, p BootParams) ([]byte, error) {
	if len(p.E820) > e820Max {
		return nil, fmt.Errorf("zero page: %d e820 entries, at most %d", len(p.E820), e820Max)
	}
	if p.CmdlineLen >= k.CmdlineMax {
		return nil, fmt.Errorf("zero page: command line of %d bytes, the kernel takes at most %d", p.CmdlineLen, k.CmdlineMax-1)
	}
	if p.InitrdSize > 0 && p.InitrdAddr+p.InitrdSize > k.InitrdAddrMax+1 {
		return nil, fmt.Errorf("zero page: initrd at %#x+%#x ends above initrd_addr_max %#x", p.InitrdAddr, p.InitrdSize, k.InitrdAddrMax)
	}
	zp := make([]byte, ZeroPageLen)
	le := binary.LittleEndian
	if k.Setup != nil {
		copy(zp[hdrSetupSects:], k.Setup)
	} else {
		// An ELF kernel has no setup header; give it the fields it reads.
		le.PutUint16(zp[hdrBootFlag:], 0xaa55)
		copy(zp[hdrMagic:], "HdrS")
		le.PutUint16(zp[hdrVersion:], 0x020f)
		le.PutUint32(zp[hdrKernelAlign:], 0x01000000)
		le.PutUint32(zp[hdrInitrdAddrMax:], uint32(k.InitrdAddrMax))
		le.PutUint32(zp[hdrCmdlineSize:], uint32(k.CmdlineMax-1))
	}
	zp[hdrTypeOfLoader] = 0xff
	zp[hdrLoadflags] |= loadedHigh | canUseHeap
	le.PutUint16(zp[hdrHeapEndPtr:], 0xfe00)
	le.PutUint32(zp[hdrCmdLinePtr:], uint32(p.CmdlineAddr))
	le.PutUint32(zp[bpExtCmdLine:], uint32(p.CmdlineAddr>>32))
	le.PutUint32(zp[bpRamdiskImage:], uint32(p.InitrdAddr))
	le.PutUint32(zp[bpRamdiskSize:], uint32(p.InitrdSize))
	le.PutUint32(zp[bpExtRamdisk:], uint32(p.InitrdAddr>>32))
	le.PutUint32(zp[bpExtRamdiskSz:], uint32(p.InitrdSize>>32))
	le.PutUint64(zp[bpACPIRSDP:], p.RSDP)
	zp[bpE820Entries] = byte(len(p.E820))
	for i, e := range p.E820 {
		o := bpE820Table + 20*i
		le.PutUint64(zp[o:], e.Addr)
		le.PutUint64(zp[o+8:], e.Size)
		le.PutUint32(zp[o+16:], e.Type)
	}
	return zp, nil
}
