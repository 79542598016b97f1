// Package guest holds guest physical memory: host mappings placed at guest
// physical addresses, reached only through bounds-checked accessors so no
// guest-supplied address can make the host index outside them.
package guest

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// Region is one contiguous range of guest RAM.
type Region struct {
	GPA  uint64
	Data []byte
}

// End returns the first address past the region.
func (r Region) End() uint64 { return r.GPA + uint64(len(r.Data)) }

// Memory is guest RAM: non-overlapping regions sorted by address.
type Memory struct {
	Regions []Region
	mapped  bool
}

// New wraps host buffers as guest memory (tests use plain slices).
func New(regions ...Region) *Memory { return &Memory{Regions: regions} }

// Layout places Size bytes of RAM at GPA.
type Layout struct {
	GPA, Size uint64
}

// Map allocates anonymous shared memory for each layout entry.
func Map(layout []Layout) (*Memory, error) {
	m := &Memory{mapped: true}
	for _, l := range layout {
		n := int(l.Size)
		b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_SHARED|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("guest memory: mmap %d MiB at %#x: %w", n>>20, l.GPA, err)
		}
		// Transparent huge pages cut the cost of the guest's first touches
		// (a fault per 4 KiB page otherwise); a kernel without THP ignores it.
		_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
		m.Regions = append(m.Regions, Region{GPA: l.GPA, Data: b})
	}
	return m, nil
}

// Close unmaps memory obtained from Map.
func (m *Memory) Close() error {
	if !m.mapped {
		return nil
	}
	var first error
	for _, r := range m.Regions {
		if err := unix.Munmap(r.Data); err != nil && first == nil {
			first = err
		}
	}
	m.Regions = nil
	return first
}

// Size returns the total RAM size.
func (m *Memory) Size() uint64 {
	var n uint64
	for _, r := range m.Regions {
		n += uint64(len(r.Data))
	}
	return n
}

// Slice returns the n bytes of RAM at gpa, which must lie inside one region.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	for _, r := range m.Regions {
		if gpa >= r.GPA && gpa < r.End() {
			off := gpa - r.GPA
			if n > uint64(len(r.Data))-off {
				return nil, fmt.Errorf("guest address %#x+%#x runs past RAM at %#x", gpa, n, r.End())
			}
			return r.Data[off : off+n : off+n], nil
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("guest address %#x is not RAM", gpa)
	}
	return nil, fmt.Errorf("guest address %#x+%#x is not RAM", gpa, n)
}

// Write copies p into RAM at gpa.
func (m *Memory) Write(gpa uint64, p []byte) error {
	b, err := m.Slice(gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(b, p)
	return nil
}

// Read copies RAM at gpa into p.
func (m *Memory) Read(gpa uint64, p []byte) error {
	b, err := m.Slice(gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, b)
	return nil
}

// Uint16 reads a little-endian value.
func (m *Memory) Uint16(gpa uint64) (uint16, error) {
	b, err := m.Slice(gpa, 2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

// Uint32 reads a little-endian value.
func (m *Memory) Uint32(gpa uint64) (uint32, error) {
	b, err := m.Slice(gpa, 4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

// Uint64 reads a little-endian value.
func (m *Memory) Uint64(gpa uint64) (uint64, error) {
	b, err := m.Slice(gpa, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// PutUint16 writes a little-endian value.
func (m *Memory) PutUint16(gpa uint64, v uint16) error {
	b, err := m.Slice(gpa, 2)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint16(b, v)
	return nil
}

// PutUint32 writes a little-endian value.
func (m *Memory) PutUint32(gpa uint64, v uint32) error {
	b, err := m.Slice(gpa, 4)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(b, v)
	return nil
}

// PutUint64 writes a little-endian value.
func (m *Memory) PutUint64(gpa uint64, v uint64) error {
	b, err := m.Slice(gpa, 8)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(b, v)
	return nil
}
