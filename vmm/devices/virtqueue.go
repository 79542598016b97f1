package devices

import (
	"encoding/binary"
	"fmt"

	"github.com/vmconv/vmconv/vmm/guest"
)

// Split virtqueue (virtio 1.x, 2.6). Every address and index the guest hands
// over is checked against RAM and the queue size before it is used.
const (
	descNext     = 1
	descWrite    = 2
	descIndirect = 4

	// QueueMax is the largest queue the devices offer.
	QueueMax = 256
)

// Desc is one descriptor of a chain, already resolved to guest RAM.
type Desc struct {
	Addr  uint64
	Len   uint32
	Write bool // device-writable
	Buf   []byte
}

// Queue is the device side of one split virtqueue.
type Queue struct {
	Num                       uint16
	Ready                     bool
	DescAddr, Avail, UsedAddr uint64
	lastAvail                 uint16
	usedIdx                   uint16
}

// DescError is a malformed descriptor or ring: the guest broke the protocol.
type DescError struct {
	Queue int
	Head  uint16
	Msg   string
}

func (e *DescError) Error() string {
	return fmt.Sprintf("virtqueue %d: chain at descriptor %d: %s", e.Queue, e.Head, e.Msg)
}

// check validates the ring addresses once the driver marks the queue ready.
func (q *Queue) check(mem *guest.Memory) error {
	if q.Num == 0 || q.Num > QueueMax || q.Num&(q.Num-1) != 0 {
		return fmt.Errorf("queue size %d is not a power of two in 1..%d", q.Num, QueueMax)
	}
	n := uint64(q.Num)
	if q.DescAddr%16 != 0 || q.Avail%2 != 0 || q.UsedAddr%4 != 0 {
		return fmt.Errorf("queue rings misaligned: desc %#x avail %#x used %#x", q.DescAddr, q.Avail, q.UsedAddr)
	}
	if _, err := mem.Slice(q.DescAddr, 16*n); err != nil {
		return fmt.Errorf("descriptor table: %w", err)
	}
	if _, err := mem.Slice(q.Avail, 6+2*n); err != nil {
		return fmt.Errorf("available ring: %w", err)
	}
	if _, err := mem.Slice(q.UsedAddr, 6+8*n); err != nil {
		return fmt.Errorf("used ring: %w", err)
	}
	return nil
}

// Pop returns the next available chain's head, or false when none is left.
func (q *Queue) Pop(mem *guest.Memory) (uint16, bool, error) {
	idx, err := mem.Uint16(q.Avail + 2)
	if err != nil {
		return 0, false, err
	}
	if idx == q.lastAvail {
		return 0, false, nil
	}
	if uint16(idx-q.lastAvail) > q.Num {
		return 0, false, fmt.Errorf("available index %d is %d ahead of %d, more than the queue size %d", idx, uint16(idx-q.lastAvail), q.lastAvail, q.Num)
	}
	head, err := mem.Uint16(q.Avail + 4 + 2*uint64(q.lastAvail%q.Num))
	if err != nil {
		return 0, false, err
	}
	q.lastAvail++
	return head, true, nil
}

// Chain walks the chain at head, bounding its length by the queue size (a
// loop therefore ends in an error) and resolving every buffer to guest RAM.
func (q *Queue) Chain(mem *guest.Memory, qi int, head uint16) ([]Desc, error) {
	var out []Desc
	i := head
	for n := 0; ; n++ {
		if n >= int(q.Num) {
			return nil, &DescError{qi, head, fmt.Sprintf("chain longer than the queue size %d (a loop?)", q.Num)}
		}
		if i >= q.Num {
			return nil, &DescError{qi, head, fmt.Sprintf("descriptor index %d outside queue of %d", i, q.Num)}
		}
		raw, err := mem.Slice(q.DescAddr+16*uint64(i), 16)
		if err != nil {
			return nil, &DescError{qi, head, err.Error()}
		}
		d := Desc{Addr: binary.LittleEndian.Uint64(raw), Len: binary.LittleEndian.Uint32(raw[8:])}
		flags := binary.LittleEndian.Uint16(raw[12:])
		next := binary.LittleEndian.Uint16(raw[14:])
		if flags&descIndirect != 0 {
			return nil, &DescError{qi, head, fmt.Sprintf("descriptor %d is indirect, which was not negotiated", i)}
		}
		d.Write = flags&descWrite != 0
		d.Buf, err = mem.Slice(d.Addr, uint64(d.Len))
		if err != nil {
			return nil, &DescError{qi, head, fmt.Sprintf("descriptor %d buffer: %v", i, err)}
		}
		out = append(out, d)
		if flags&descNext == 0 {
			return out, nil
		}
		i = next
	}
}

// Push puts a used element and publishes the new used index.
func (q *Queue) Push(mem *guest.Memory, head uint16, written uint32) error {
	e := q.UsedAddr + 4 + 8*uint64(q.usedIdx%q.Num)
	if err := mem.PutUint32(e, uint32(head)); err != nil {
		return err
	}
	if err := mem.PutUint32(e+4, written); err != nil {
		return err
	}
	q.usedIdx++
	// x86 keeps stores in order; the element is visible before the index.
	return mem.PutUint16(q.UsedAddr+2, q.usedIdx)
}

func (q *Queue) reset() { *q = Queue{} }
