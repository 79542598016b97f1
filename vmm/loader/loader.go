// Package loader reads a Linux kernel for direct 64-bit entry: an ELF vmlinux
// by its PT_LOAD segments, or a bzImage whose setup header is checked and
// whose compressed payload is unpacked here, on the host, so the guest never
// runs its own decompressor. It also builds the zero page (struct
// boot_params) of the Linux boot protocol.
package loader

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz/lzma"
)

// Setup header fields (Documentation/arch/x86/boot.rst), offsets in the file.
const (
	hdrSetupSects    = 0x1f1
	hdrBootFlag      = 0x1fe
	hdrJump          = 0x200
	hdrMagic         = 0x202
	hdrVersion       = 0x206
	hdrTypeOfLoader  = 0x210
	hdrLoadflags     = 0x211
	hdrHeapEndPtr    = 0x224
	hdrCmdLinePtr    = 0x228
	hdrInitrdAddrMax = 0x22c
	hdrKernelAlign   = 0x230
	hdrRelocatable   = 0x234
	hdrXLoadflags    = 0x236
	hdrCmdlineSize   = 0x238
	hdrPayloadOffset = 0x248
	hdrPayloadLength = 0x24c
	hdrPrefAddress   = 0x258
	hdrInitSize      = 0x260

	xlfKernel64 = 1 << 0

	// MinProtocol is the oldest boot protocol with a 64-bit entry and
	// xloadflags that we accept.
	MinProtocol = 0x020c

	// MaxKernel bounds an unpacked kernel: Debian's is 66 MB.
	MaxKernel = 256 << 20
)

// Segment is one piece of the kernel image to place in guest memory.
type Segment struct {
	PAddr   uint64
	Data    []byte
	MemSize uint64 // ≥ len(Data); the rest is zero (bss)
}

// Kernel is a kernel ready to place and enter.
type Kernel struct {
	Segments []Segment
	// Entry is the 64-bit entry point (physical).
	Entry uint64
	// PVHEntry is the 32-bit PVH entry from the XEN_ELFNOTE_PHYS32_ENTRY note, or 0.
	PVHEntry uint64
	// Setup is the bzImage setup header from 0x1f1 to its end (nil for ELF).
	Setup []byte
	// Protocol is the boot protocol version (0 for an ELF).
	Protocol uint16
	// InitrdAddrMax is the highest address the initrd may end at.
	InitrdAddrMax uint64
	// CmdlineMax is the longest command line the kernel accepts.
	CmdlineMax int
	// Compression names the bzImage payload format ("" for an ELF).
	Compression string
	// Payload is the compressed payload (for tests comparing with other tools).
	Payload []byte
}

// Load reads a kernel from r (size bytes): an ELF or a bzImage.
func Load(r io.ReaderAt, size int64) (*Kernel, error) {
	var magic [4]byte
	if _, err := r.ReadAt(magic[:], 0); err != nil {
		return nil, fmt.Errorf("kernel: reading magic: %w", err)
	}
	if bytes.Equal(magic[:], []byte(elf.ELFMAG)) {
		return LoadELF(r, size)
	}
	return LoadBzImage(r, size)
}

// LoadELF reads a 64-bit x86 ELF kernel of size bytes.
func LoadELF(r io.ReaderAt, size int64) (*Kernel, error) {
	return loadELF(r, size, func(p *elf.Prog) ([]byte, error) {
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil && !(err == io.EOF && p.Filesz == 0) {
			return nil, err
		}
		return data, nil
	})
}

// LoadELFBytes is LoadELF of a kernel held in memory (or mapped from a
// file): the segments' data are slices of b, not copies, so a 60 MiB
// vmlinux costs no heap.
func LoadELFBytes(b []byte) (*Kernel, error) {
	return loadELF(bytes.NewReader(b), int64(len(b)), func(p *elf.Prog) ([]byte, error) {
		return b[p.Off : p.Off+p.Filesz : p.Off+p.Filesz], nil // bounds checked by loadELF
	})
}

func loadELF(r io.ReaderAt, size int64, segment func(*elf.Prog) ([]byte, error)) (*Kernel, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("kernel ELF: %w", err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("kernel ELF: %v %v, want ELFCLASS64 EM_X86_64", f.Class, f.Machine)
	}
	k := &Kernel{Entry: f.Entry, InitrdAddrMax: 0x7fffffff, CmdlineMax: 2048}
	var total uint64
	for i, p := range f.Progs {
		switch p.Type {
		case elf.PT_LOAD:
			if p.Memsz < p.Filesz {
				return nil, fmt.Errorf("kernel ELF: segment %d: memsz %#x < filesz %#x", i, p.Memsz, p.Filesz)
			}
			if p.Off > uint64(size) || p.Filesz > uint64(size)-p.Off {
				return nil, fmt.Errorf("kernel ELF: segment %d: file range %#x+%#x outside the %d-byte file", i, p.Off, p.Filesz, size)
			}
			total += p.Memsz
			if p.Memsz > MaxKernel || total > MaxKernel || p.Paddr+p.Memsz < p.Paddr {
				return nil, fmt.Errorf("kernel ELF: segment %d at %#x: size %#x too large", i, p.Paddr, p.Memsz)
			}
			data, err := segment(p)
			if err != nil {
				return nil, fmt.Errorf("kernel ELF: segment %d at file offset %#x: %w", i, p.Off, err)
			}
			k.Segments = append(k.Segments, Segment{PAddr: p.Paddr, Data: data, MemSize: p.Memsz})
		case elf.PT_NOTE:
			if p.Filesz > 1<<20 || p.Off > uint64(size) || p.Filesz > uint64(size)-p.Off {
				continue
			}
			note := make([]byte, p.Filesz)
			if _, err := p.ReadAt(note, 0); err != nil {
				continue
			}
			if e, ok := pvhEntry(note); ok {
				k.PVHEntry = e
			}
		}
	}
	if len(k.Segments) == 0 {
		return nil, errors.New("kernel ELF: no PT_LOAD segment")
	}
	// The entry is virtual in some builds; map it through the segment holding it.
	k.Entry = physEntry(f, k.Entry)
	return k, nil
}

func physEntry(f *elf.File, entry uint64) uint64 {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && entry >= p.Vaddr && entry-p.Vaddr < p.Memsz {
			return entry - p.Vaddr + p.Paddr
		}
	}
	return entry
}

// pvhEntry finds XEN_ELFNOTE_PHYS32_ENTRY (type 18, name "Xen") in a note segment.
func pvhEntry(b []byte) (uint64, bool) {
	for len(b) >= 12 {
		nsz := binary.LittleEndian.Uint32(b)
		dsz := binary.LittleEndian.Uint32(b[4:])
		typ := binary.LittleEndian.Uint32(b[8:])
		b = b[12:]
		na, da := (uint64(nsz)+3)&^3, (uint64(dsz)+3)&^3
		if na > uint64(len(b)) || da > uint64(len(b))-na {
			return 0, false
		}
		name, desc := b[:nsz], b[na:na+uint64(dsz)]
		b = b[na+da:]
		if typ == 18 && string(bytes.TrimRight(name, "\x00")) == "Xen" {
			switch len(desc) {
			case 4:
				return uint64(binary.LittleEndian.Uint32(desc)), true
			case 8:
				return binary.LittleEndian.Uint64(desc), true
			}
		}
	}
	return 0, false
}

// LoadBzImage checks a bzImage's setup header, unpacks its payload and loads
// the ELF inside.
func LoadBzImage(r io.ReaderAt, size int64) (*Kernel, error) {
	k, err := readSetup(r, size)
	if err != nil {
		return nil, err
	}
	elfBytes, comp, err := Unpack(k.Payload)
	if err != nil {
		return nil, fmt.Errorf("bzImage: payload: %w", err)
	}
	k.Compression = comp
	inner, err := LoadELF(bytes.NewReader(elfBytes), int64(len(elfBytes)))
	if err != nil {
		return nil, fmt.Errorf("bzImage: unpacked payload: %w", err)
	}
	k.Segments, k.Entry, k.PVHEntry = inner.Segments, inner.Entry, inner.PVHEntry
	return k, nil
}

// ReadSetup checks a bzImage's setup header and reads its compressed payload
// without unpacking it: the Kernel has Setup, Protocol, limits and Payload
// but no segments yet (see Unpack and LoadELF).
func ReadSetup(r io.ReaderAt, size int64) (*Kernel, error) { return readSetup(r, size) }

// readSetup checks the setup header and reads the compressed payload.
func readSetup(r io.ReaderAt, size int64) (*Kernel, error) {
	if size < 0x270 {
		return nil, fmt.Errorf("bzImage: %d bytes, too short for a setup header", size)
	}
	hdr := make([]byte, 0x270)
	if _, err := r.ReadAt(hdr, 0); err != nil {
		return nil, fmt.Errorf("bzImage: reading setup header: %w", err)
	}
	le := binary.LittleEndian
	if string(hdr[hdrMagic:hdrMagic+4]) != "HdrS" {
		return nil, fmt.Errorf("bzImage: no \"HdrS\" at %#x (got %q): not a Linux kernel", hdrMagic, hdr[hdrMagic:hdrMagic+4])
	}
	if le.Uint16(hdr[hdrBootFlag:]) != 0xaa55 {
		return nil, fmt.Errorf("bzImage: boot flag at %#x is %#x, want 0xaa55", hdrBootFlag, le.Uint16(hdr[hdrBootFlag:]))
	}
	k := &Kernel{Protocol: le.Uint16(hdr[hdrVersion:])}
	if k.Protocol < MinProtocol {
		return nil, fmt.Errorf("bzImage: boot protocol %d.%02d at %#x, need 2.12 or later for 64-bit entry",
			k.Protocol>>8, k.Protocol&0xff, hdrVersion)
	}
	if xl := le.Uint16(hdr[hdrXLoadflags:]); xl&xlfKernel64 == 0 {
		return nil, fmt.Errorf("bzImage: xloadflags %#x at %#x lack XLF_KERNEL_64: no 64-bit entry", xl, hdrXLoadflags)
	}
	if align := le.Uint32(hdr[hdrKernelAlign:]); align == 0 || align&(align-1) != 0 {
		return nil, fmt.Errorf("bzImage: kernel_alignment %#x at %#x is not a power of two", align, hdrKernelAlign)
	}
	// The setup header ends at 0x202 + the byte at 0x201 (the jump offset).
	end := 0x202 + int(hdr[0x201])
	if end < hdrInitSize+4 || end > len(hdr) {
		end = min(max(end, hdrInitSize+4), len(hdr))
	}
	k.Setup = append([]byte(nil), hdr[hdrSetupSects:end]...)
	k.InitrdAddrMax = uint64(le.Uint32(hdr[hdrInitrdAddrMax:]))
	k.CmdlineMax = int(le.Uint32(hdr[hdrCmdlineSize:]))
	if k.CmdlineMax == 0 {
		k.CmdlineMax = 255
	}
	sects := int64(hdr[hdrSetupSects])
	if sects == 0 {
		sects = 4
	}
	pm := (sects + 1) * 512
	poff, plen := int64(le.Uint32(hdr[hdrPayloadOffset:])), int64(le.Uint32(hdr[hdrPayloadLength:]))
	if pm > size || poff > size-pm || plen > size-pm-poff || plen < 4 {
		return nil, fmt.Errorf("bzImage: payload at %#x+%#x (protected-mode part at %#x) lies outside the %d-byte file",
			poff, plen, pm, size)
	}
	k.Payload = make([]byte, plen)
	if _, err := r.ReadAt(k.Payload, pm+poff); err != nil {
		return nil, fmt.Errorf("bzImage: reading payload at %#x: %w", pm+poff, err)
	}
	return k, nil
}

// Unpack decompresses a Linux kernel payload: a compressed stream followed by
// its uncompressed size as 4 little-endian bytes (the kernel build's
// size_append). It returns the data and the compression's name.
func Unpack(p []byte) ([]byte, string, error) {
	if len(p) < 8 {
		return nil, "", fmt.Errorf("payload of %d bytes is too short", len(p))
	}
	n := int64(binary.LittleEndian.Uint32(p[len(p)-4:]))
	if n == 0 || n > MaxKernel {
		return nil, "", fmt.Errorf("payload's trailing size %d is outside 1..%d", n, MaxKernel)
	}
	stream := p[:len(p)-4]
	var (
		r    io.Reader
		name string
		err  error
	)
	switch {
	case bytes.HasPrefix(stream, []byte{0x1f, 0x8b}):
		name = "gzip"
		var g *gzip.Reader
		if g, err = gzip.NewReader(bytes.NewReader(stream)); err == nil {
			g.Multistream(false)
			r = g
		}
	case bytes.HasPrefix(stream, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		name = "xz"
		out, err := unxz(stream, n)
		if err != nil {
			return nil, name, fmt.Errorf("xz: %w", err)
		}
		if int64(len(out)) != n {
			return nil, name, fmt.Errorf("xz: stream holds %d bytes, the payload declares %d", len(out), n)
		}
		return out, name, nil
	case bytes.HasPrefix(stream, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		name = "zstd"
		var d *zstd.Decoder
		// The kernel's zstd payload uses a window as large as the kernel.
		// zstd -22 --ultra, the kernel's setting, uses a 128 MiB window.
		if d, err = zstd.NewReader(bytes.NewReader(stream), zstd.WithDecoderMaxWindow(128<<20),
			zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxKernel)); err == nil {
			defer d.Close()
			r = d
		}
	case bytes.HasPrefix(stream, []byte{0x02, 0x21, 0x4c, 0x18}):
		name = "lz4"
		r = lz4.NewReader(bytes.NewReader(stream))
	case bytes.HasPrefix(stream, []byte("BZh")):
		name = "bzip2"
		r = bzip2.NewReader(bytes.NewReader(stream))
	case bytes.HasPrefix(stream, []byte{0x5d, 0, 0}):
		name = "lzma"
		r, err = lzma.NewReader(bytes.NewReader(stream))
	default:
		return nil, "", fmt.Errorf("unknown compression (magic % x); supported: gzip, xz, zstd, lz4, bzip2, lzma", stream[:min(6, len(stream))])
	}
	if err != nil {
		return nil, name, fmt.Errorf("%s: %w", name, err)
	}
	// Grow as data arrives rather than trusting the declared size up front.
	var out bytes.Buffer
	if _, err := io.Copy(&out, io.LimitReader(r, n)); err != nil {
		return nil, name, fmt.Errorf("%s: %w", name, err)
	}
	if int64(out.Len()) != n {
		return nil, name, fmt.Errorf("%s: stream ends after %d bytes, the payload declares %d", name, out.Len(), n)
	}
	return out.Bytes(), name, nil
}
