package devices

import (
	"encoding/binary"
	"testing"

	"github.com/vmconv/vmconv/vmm/guest"
)

// FuzzBlockQueue lets the fuzzer write the guest's side of a virtqueue
// (descriptor table, rings, request headers) and the queue registers: the
// device must answer or fault, never panic, hang or touch memory outside RAM.
func FuzzBlockQueue(f *testing.F) {
	seed := make([]byte, 0x400)
	// A valid read request: header at 0x200, data 0x300 (256 bytes is not a
	// sector multiple: an I/O error), status at 0x3f0.
	binary.LittleEndian.PutUint64(seed[0:], 0x200)
	binary.LittleEndian.PutUint32(seed[8:], 16)
	binary.LittleEndian.PutUint16(seed[12:], descNext)
	binary.LittleEndian.PutUint16(seed[14:], 1)
	binary.LittleEndian.PutUint64(seed[16:], 0x300)
	binary.LittleEndian.PutUint32(seed[24:], 0x80)
	binary.LittleEndian.PutUint16(seed[28:], descNext|descWrite)
	binary.LittleEndian.PutUint16(seed[30:], 2)
	binary.LittleEndian.PutUint64(seed[32:], 0x3f0)
	binary.LittleEndian.PutUint32(seed[40:], 1)
	binary.LittleEndian.PutUint16(seed[44:], descWrite)
	binary.LittleEndian.PutUint16(seed[0x102:], 1) // avail idx
	f.Add(seed, uint16(4), uint16(1))
	f.Add(seed, uint16(8), uint16(7))
	f.Fuzz(func(t *testing.T, ram []byte, qsize uint16, notifies uint16) {
		if len(ram) > 1<<16 {
			return
		}
		mem := guest.New(guest.Region{GPA: 0, Data: append(make([]byte, 0, len(ram)), ram...)})
		img := &cowImage{base: make([]byte, 4096), over: map[int64][]byte{}}
		b := NewBlock(mem, img, "f", nil, func(error) {})
		w := func(off uint64, v uint32) {
			p := make([]byte, 4)
			binary.LittleEndian.PutUint32(p, v)
			b.Write(off, p)
		}
		w(mmioQueueNum, uint32(qsize))
		w(mmioQueueDescLo, 0)
		w(mmioQueueAvailLo, 0x100)
		w(mmioQueueUsedLo, 0x180)
		w(mmioQueueReady, 1)
		for i := 0; i < int(notifies%16); i++ {
			w(mmioQueueNotify, 0)
		}
		w(mmioIntACK, 0xffffffff)
		w(mmioStatus, 0)
	})
}
