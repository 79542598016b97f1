package devices

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/vmm/guest"
)

// WritableImage is a disk the guest may write: a copy-on-write overlay over
// the image being verified.
type WritableImage interface {
	disk.Image
	WriteAt(p []byte, off int64) (int, error)
}

// virtio-mmio version 2 register offsets (virtio 1.x, 4.2.2).
const (
	mmioMagic          = 0x000
	mmioVersion        = 0x004
	mmioDeviceID       = 0x008
	mmioVendorID       = 0x00c
	mmioDevFeatures    = 0x010
	mmioDevFeaturesSel = 0x014
	mmioDrvFeatures    = 0x020
	mmioDrvFeaturesSel = 0x024
	mmioQueueSel       = 0x030
	mmioQueueNumMax    = 0x034
	mmioQueueNum       = 0x038
	mmioQueueReady     = 0x044
	mmioQueueNotify    = 0x050
	mmioIntStatus      = 0x060
	mmioIntACK         = 0x064
	mmioStatus         = 0x070
	mmioQueueDescLo    = 0x080
	mmioQueueDescHi    = 0x084
	mmioQueueAvailLo   = 0x090
	mmioQueueAvailHi   = 0x094
	mmioQueueUsedLo    = 0x0a0
	mmioQueueUsedHi    = 0x0a4
	mmioConfigGen      = 0x0fc
	mmioConfig         = 0x100

	// MMIOSize is the window of one transport.
	MMIOSize = 0x1000

	statusFeaturesOK = 8
	statusFailed     = 0x80
	statusNeedsReset = 0x40

	featVersion1  = 1 << 32
	featBlkSegMax = 1 << 2
	featBlkFlush  = 1 << 9
	featBlkRO     = 1 << 5

	blkIn    = 0
	blkOut   = 1
	blkFlush = 4
	blkGetID = 8

	blkOK     = 0
	blkIOErr  = 1
	blkUnsupp = 2

	segMax = 126
)

// Block is a virtio-mmio block device with one request queue.
type Block struct {
	mu    sync.Mutex
	mem   *guest.Memory
	img   WritableImage
	id    string
	irq   IRQ
	fault Fault

	devFeatSel, drvFeatSel uint32
	drvFeatures            uint64
	status                 uint32
	intStatus              uint32
	queueSel               uint32
	q                      Queue
	level                  bool
	broken                 bool

	// Stats for tests and the report.
	Reads, Writes int
}

// NewBlock serves img to the guest. id is returned to GET_ID (at most 20 bytes).
func NewBlock(mem *guest.Memory, img WritableImage, id string, irq IRQ, fault Fault) *Block {
	return &Block{mem: mem, img: img, id: id, irq: irq, fault: fault}
}

func (b *Block) features() uint64 { return featVersion1 | featBlkFlush | featBlkSegMax }

func (b *Block) config() []byte {
	c := make([]byte, 0x20)
	binary.LittleEndian.PutUint64(c[0:], uint64(b.img.Size()/512))
	binary.LittleEndian.PutUint32(c[0xc:], segMax)
	return c
}

// Read implements Device.
func (b *Block) Read(off uint64, p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range p {
		p[i] = 0
	}
	if off >= mmioConfig {
		c := b.config()
		o := off - mmioConfig
		if o < uint64(len(c)) {
			copy(p, c[o:])
		}
		return
	}
	if len(p) != 4 || off%4 != 0 {
		return // registers are 32-bit only
	}
	var v uint32
	switch off {
	case mmioMagic:
		v = 0x74726976 // "virt"
	case mmioVersion:
		v = 2
	case mmioDeviceID:
		v = 2 // block
	case mmioVendorID:
		v = 0x4e4f4356 // "VCON"
	case mmioDevFeatures:
		if b.devFeatSel < 2 {
			v = uint32(b.features() >> (32 * b.devFeatSel))
		}
	case mmioQueueNumMax:
		if b.queueSel == 0 {
			v = QueueMax
		}
	case mmioQueueReady:
		if b.queueSel == 0 && b.q.Ready {
			v = 1
		}
	case mmioIntStatus:
		v = b.intStatus
	case mmioStatus:
		v = b.status
	case mmioConfigGen:
		v = 0
	}
	binary.LittleEndian.PutUint32(p, v)
}

// Write implements Device.
func (b *Block) Write(off uint64, p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if off >= mmioConfig || len(p) != 4 || off%4 != 0 {
		return // configuration space is read-only
	}
	v := binary.LittleEndian.Uint32(p)
	q := &b.q
	hi := func(dst *uint64, lo bool) {
		if lo {
			*dst = *dst&^0xffffffff | uint64(v)
		} else {
			*dst = *dst&0xffffffff | uint64(v)<<32
		}
	}
	switch off {
	case mmioDevFeaturesSel:
		b.devFeatSel = v
	case mmioDrvFeaturesSel:
		b.drvFeatSel = v
	case mmioDrvFeatures:
		if b.drvFeatSel < 2 {
			shift := 32 * b.drvFeatSel
			b.drvFeatures = b.drvFeatures&^(0xffffffff<<shift) | uint64(v)<<shift
		}
	case mmioQueueSel:
		b.queueSel = v
	case mmioQueueNum:
		if b.queueSel == 0 {
			q.Num = uint16(min(v, 0xffff))
		}
	case mmioQueueDescLo, mmioQueueDescHi:
		if b.queueSel == 0 {
			hi(&q.DescAddr, off == mmioQueueDescLo)
		}
	case mmioQueueAvailLo, mmioQueueAvailHi:
		if b.queueSel == 0 {
			hi(&q.Avail, off == mmioQueueAvailLo)
		}
	case mmioQueueUsedLo, mmioQueueUsedHi:
		if b.queueSel == 0 {
			hi(&q.UsedAddr, off == mmioQueueUsedLo)
		}
	case mmioQueueReady:
		if b.queueSel != 0 {
			return
		}
		if v&1 == 0 {
			q.Ready = false
			return
		}
		if err := q.check(b.mem); err != nil {
			b.fail(fmt.Errorf("virtio-blk %s: queue 0: %w", b.id, err))
			return
		}
		q.Ready = true
	case mmioQueueNotify:
		if v == 0 && q.Ready && !b.broken {
			b.process()
		}
	case mmioIntACK:
		b.intStatus &^= v
		b.updateIRQ()
	case mmioStatus:
		if v == 0 {
			b.reset()
			return
		}
		if v&statusFeaturesOK != 0 && b.status&statusFeaturesOK == 0 {
			// Accept only what we offered, and VERSION_1 is mandatory.
			if b.drvFeatures&^b.features() != 0 || b.drvFeatures&featVersion1 == 0 {
				v &^= statusFeaturesOK
			}
		}
		b.status = v
	}
}

func (b *Block) reset() {
	b.status, b.intStatus, b.drvFeatures, b.devFeatSel, b.drvFeatSel, b.queueSel = 0, 0, 0, 0, 0, 0
	b.q.reset()
	b.broken = false
	b.updateIRQ()
}

func (b *Block) updateIRQ() {
	level := b.intStatus != 0
	if level != b.level {
		b.level = level
		if b.irq != nil {
			b.irq(level)
		}
	}
}

func (b *Block) fail(err error) {
	b.broken = true
	b.status |= statusNeedsReset
	if b.fault != nil {
		b.fault(err)
	}
}

// process serves every available request.
func (b *Block) process() {
	done := 0
	for {
		head, ok, err := b.q.Pop(b.mem)
		if err != nil {
			b.fail(fmt.Errorf("virtio-blk %s: queue 0: %w", b.id, err))
			return
		}
		if !ok {
			break
		}
		chain, err := b.q.Chain(b.mem, 0, head)
		if err != nil {
			b.fail(fmt.Errorf("virtio-blk %s: bad descriptor: %w", b.id, err))
			return
		}
		n, err := b.request(chain)
		if err != nil {
			b.fail(fmt.Errorf("virtio-blk %s: bad descriptor: %w", b.id, &DescError{0, head, err.Error()}))
			return
		}
		if err := b.q.Push(b.mem, head, n); err != nil {
			b.fail(fmt.Errorf("virtio-blk %s: used ring: %w", b.id, err))
			return
		}
		done++
	}
	if done > 0 {
		b.intStatus |= 1
		b.updateIRQ()
	}
}

// request performs one block request; protocol violations are errors, I/O
// problems are reported to the guest in the status byte.
func (b *Block) request(chain []Desc) (uint32, error) {
	if len(chain) < 2 {
		return 0, errors.New("request needs a header and a status descriptor")
	}
	hdr, st := chain[0], chain[len(chain)-1]
	if hdr.Write || hdr.Len < 16 {
		return 0, fmt.Errorf("header descriptor: %d bytes, device-writable %v (want 16, read-only)", hdr.Len, hdr.Write)
	}
	if !st.Write || st.Len < 1 {
		return 0, errors.New("status descriptor is not a device-writable byte")
	}
	typ := binary.LittleEndian.Uint32(hdr.Buf)
	sector := binary.LittleEndian.Uint64(hdr.Buf[8:])
	data := chain[1 : len(chain)-1]
	var written uint32
	status := byte(blkOK)
	switch typ {
	case blkIn, blkOut:
		off := int64(0)
		if sector > uint64(b.img.Size())/512 {
			status = blkIOErr
			break
		}
		off = int64(sector * 512)
		for _, d := range data {
			if d.Write != (typ == blkIn) {
				return 0, fmt.Errorf("data descriptor at %#x has the wrong direction for a %s", d.Addr, map[uint32]string{0: "read", 1: "write"}[typ])
			}
			if d.Len%512 != 0 || off+int64(d.Len) > b.img.Size() {
				status = blkIOErr
				break
			}
			var err error
			if typ == blkIn {
				_, err = b.img.ReadAt(d.Buf, off)
				if err == io.EOF {
					err = nil
				}
				written += d.Len
				b.Reads++
			} else {
				_, err = b.img.WriteAt(d.Buf, off)
				b.Writes++
			}
			if err != nil {
				status = blkIOErr
				break
			}
			off += int64(d.Len)
		}
	case blkFlush:
	case blkGetID:
		if len(data) != 1 || !data[0].Write {
			return 0, errors.New("GET_ID needs one device-writable buffer")
		}
		id := make([]byte, 20)
		copy(id, b.id)
		written = uint32(copy(data[0].Buf, id))
	default:
		status = blkUnsupp
	}
	st.Buf[0] = status
	return written + 1, nil
}
