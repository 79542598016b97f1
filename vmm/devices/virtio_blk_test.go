package devices

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/vmm/guest"
)

// cowImage is a minimal copy-on-write image for tests (the production one is
// disk.Overlay): writes land in a map of sectors, the base is never touched.
type cowImage struct {
	base []byte
	over map[int64][]byte
}

func (c *cowImage) Size() int64  { return int64(len(c.base)) }
func (c *cowImage) Close() error { return nil }
func (c *cowImage) Extents(off, n int64) ([]disk.Extent, error) {
	return []disk.Extent{{Offset: off, Length: n, Kind: disk.Data}}, nil
}
func (c *cowImage) ReadAt(p []byte, off int64) (int, error) {
	if off >= c.Size() {
		return 0, io.EOF
	}
	n := copy(p, c.base[off:])
	for i := int64(0); i < int64(n); i += 512 {
		if s, ok := c.over[(off+i)/512]; ok {
			copy(p[i:], s)
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (c *cowImage) WriteAt(p []byte, off int64) (int, error) {
	if off%512 != 0 || len(p)%512 != 0 || off+int64(len(p)) > c.Size() {
		return 0, errors.New("unaligned")
	}
	for i := 0; i < len(p); i += 512 {
		c.over[(off+int64(i))/512] = append([]byte(nil), p[i:i+512]...)
	}
	return len(p), nil
}

const (
	tDesc  = 0x1000
	tAvail = 0x2000
	tUsed  = 0x3000
	tBuf   = 0x10000
	tRAM   = 1 << 20
)

type driver struct {
	t      *testing.T
	mem    *guest.Memory
	b      *Block
	faults []error
	irqs   []bool
	avail  uint16
	next   uint16
}

func newDriver(t *testing.T, img WritableImage, qsize uint32) *driver {
	d := &driver{t: t, mem: guest.New(guest.Region{GPA: 0, Data: make([]byte, tRAM)})}
	d.b = NewBlock(d.mem, img, "disk0", func(l bool) { d.irqs = append(d.irqs, l) }, func(err error) { d.faults = append(d.faults, err) })
	require.Equal(t, uint32(0x74726976), d.r32(mmioMagic))
	require.Equal(t, uint32(2), d.r32(mmioVersion))
	require.Equal(t, uint32(2), d.r32(mmioDeviceID))
	d.w32(mmioStatus, 0)
	d.w32(mmioStatus, 1|2)
	d.w32(mmioDevFeaturesSel, 1)
	require.Equal(t, uint32(1), d.r32(mmioDevFeatures)&1, "VERSION_1 offered")
	d.w32(mmioDevFeaturesSel, 0)
	f0 := d.r32(mmioDevFeatures)
	require.NotZero(t, f0&featBlkFlush)
	d.w32(mmioDrvFeaturesSel, 0)
	d.w32(mmioDrvFeatures, f0)
	d.w32(mmioDrvFeaturesSel, 1)
	d.w32(mmioDrvFeatures, 1)
	d.w32(mmioStatus, 1|2|8)
	require.Equal(t, uint32(8), d.r32(mmioStatus)&8, "FEATURES_OK accepted")
	d.w32(mmioQueueSel, 0)
	require.Equal(t, uint32(QueueMax), d.r32(mmioQueueNumMax))
	d.w32(mmioQueueNum, qsize)
	d.w32(mmioQueueDescLo, tDesc)
	d.w32(mmioQueueDescHi, 0)
	d.w32(mmioQueueAvailLo, tAvail)
	d.w32(mmioQueueUsedLo, tUsed)
	d.w32(mmioQueueReady, 1)
	d.w32(mmioStatus, 1|2|8|4)
	return d
}

func (d *driver) r32(off uint64) uint32 {
	p := make([]byte, 4)
	d.b.Read(off, p)
	return binary.LittleEndian.Uint32(p)
}

func (d *driver) w32(off uint64, v uint32) {
	p := make([]byte, 4)
	binary.LittleEndian.PutUint32(p, v)
	d.b.Write(off, p)
}

func (d *driver) desc(i uint16, addr uint64, n uint32, flags, next uint16) {
	b, err := d.mem.Slice(tDesc+16*uint64(i), 16)
	require.NoError(d.t, err)
	binary.LittleEndian.PutUint64(b, addr)
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

func (d *driver) submit(head uint16, qsize uint16) {
	require.NoError(d.t, d.mem.PutUint16(tAvail+4+2*uint64(d.avail%qsize), head))
	d.avail++
	require.NoError(d.t, d.mem.PutUint16(tAvail+2, d.avail))
	d.w32(mmioQueueNotify, 0)
}

// request builds header/data/status descriptors and submits them.
func (d *driver) request(typ uint32, sector uint64, data []byte, write bool) byte {
	hdr := uint64(tBuf)
	b, _ := d.mem.Slice(hdr, 16)
	binary.LittleEndian.PutUint32(b, typ)
	binary.LittleEndian.PutUint64(b[8:], sector)
	buf := uint64(tBuf + 0x1000)
	st := uint64(tBuf + 0x800)
	require.NoError(d.t, d.mem.Write(buf, data))
	d.desc(0, hdr, 16, descNext, 1)
	f := uint16(descNext)
	if write {
		f |= descWrite
	}
	d.desc(1, buf, uint32(len(data)), f, 2)
	d.desc(2, st, 1, descWrite, 0)
	require.NoError(d.t, d.mem.Write(st, []byte{0xee}))
	d.submit(0, 8)
	if write {
		require.NoError(d.t, d.mem.Read(buf, data))
	}
	s, _ := d.mem.Slice(st, 1)
	return s[0]
}

func TestBlockReadWrite(t *testing.T) {
	base := make([]byte, 64*512)
	rand.New(rand.NewSource(1)).Read(base)
	orig := append([]byte(nil), base...)
	img := &cowImage{base: base, over: map[int64][]byte{}}
	d := newDriver(t, img, 8)

	cap := make([]byte, 8)
	d.b.Read(mmioConfig, cap)
	assert.Equal(t, uint64(64), binary.LittleEndian.Uint64(cap))

	got := make([]byte, 1024)
	require.Equal(t, byte(blkOK), d.request(blkIn, 3, got, true))
	assert.Equal(t, orig[3*512:5*512], got)
	used, _ := d.mem.Uint16(tUsed + 2)
	assert.Equal(t, uint16(1), used)
	l, _ := d.mem.Uint32(tUsed + 8)
	assert.Equal(t, uint32(1025), l, "bytes written into the guest: data + status")
	assert.Equal(t, []bool{true}, d.irqs)
	assert.Equal(t, uint32(1), d.r32(mmioIntStatus))
	d.w32(mmioIntACK, 1)
	assert.Equal(t, []bool{true, false}, d.irqs)

	w := bytes.Repeat([]byte{0x5a}, 512)
	require.Equal(t, byte(blkOK), d.request(blkOut, 10, w, false))
	require.Equal(t, byte(blkOK), d.request(blkIn, 10, got[:512], true))
	assert.Equal(t, w, got[:512], "guest reads its own write")
	assert.Equal(t, orig, base, "the base image never changes")

	require.Equal(t, byte(blkOK), d.request(blkFlush, 0, nil, false)) // zero-length data desc
	require.Equal(t, byte(blkIOErr), d.request(blkIn, 64, got[:512], true), "past the end")
	require.Equal(t, byte(blkIOErr), d.request(blkIn, 63, got[:1024], true), "runs past the end")
	require.Equal(t, byte(blkIOErr), d.request(blkIn, 1<<60, got[:512], true), "huge sector")
	require.Equal(t, byte(blkIOErr), d.request(blkIn, 0, got[:100], true), "not a sector multiple")
	require.Equal(t, byte(blkUnsupp), d.request(77, 0, got[:512], true))
	id := make([]byte, 20)
	require.Equal(t, byte(blkOK), d.request(blkGetID, 0, id, true))
	assert.Equal(t, "disk0", string(bytes.TrimRight(id, "\x00")))
	assert.Empty(t, d.faults)
}

func TestBlockFeatureNegotiation(t *testing.T) {
	img := &cowImage{base: make([]byte, 4096), over: map[int64][]byte{}}
	d := newDriver(t, img, 8)
	d.w32(mmioStatus, 0)
	d.w32(mmioStatus, 3)
	d.w32(mmioDrvFeaturesSel, 0)
	d.w32(mmioDrvFeatures, 1<<28) // indirect descriptors: not offered
	d.w32(mmioStatus, 3|8)
	assert.Zero(t, d.r32(mmioStatus)&8, "unoffered feature refused")
	d.w32(mmioStatus, 0)
	d.w32(mmioStatus, 3)
	d.w32(mmioStatus, 3|8)
	assert.Zero(t, d.r32(mmioStatus)&8, "legacy driver without VERSION_1 refused")
}

func TestBlockBadDescriptors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(d *driver)
		head  uint16
		want  string
	}{
		{"loop", func(d *driver) {
			d.desc(0, tBuf, 16, descNext, 1)
			d.desc(1, tBuf+0x1000, 512, descNext|descWrite, 0)
		}, 0, "loop"},
		{"buffer outside RAM", func(d *driver) {
			d.desc(0, tBuf, 16, descNext, 1)
			d.desc(1, tRAM+4096, 512, descNext|descWrite, 2)
			d.desc(2, tBuf+0x800, 1, descWrite, 0)
		}, 0, "not RAM"},
		{"length wraps", func(d *driver) {
			d.desc(0, tBuf, 16, descNext, 1)
			d.desc(1, tBuf, 0xffffffff, descNext|descWrite, 2)
			d.desc(2, tBuf+0x800, 1, descWrite, 0)
		}, 0, "past RAM"},
		{"next out of range", func(d *driver) {
			d.desc(0, tBuf, 16, descNext, 200)
		}, 0, "outside queue"},
		{"head out of range", func(d *driver) {}, 9, "outside queue"},
		{"indirect", func(d *driver) {
			d.desc(0, tBuf, 16, descIndirect, 0)
		}, 0, "indirect"},
		{"status read-only", func(d *driver) {
			d.desc(0, tBuf, 16, descNext, 1)
			d.desc(1, tBuf+0x800, 1, 0, 0)
		}, 0, "status"},
		{"short header", func(d *driver) {
			d.desc(0, tBuf, 8, descNext, 1)
			d.desc(1, tBuf+0x800, 1, descWrite, 0)
		}, 0, "header"},
		{"read into read-only buffer", func(d *driver) {
			d.desc(0, tBuf, 16, descNext, 1)
			d.desc(1, tBuf+0x1000, 512, descNext, 2)
			d.desc(2, tBuf+0x800, 1, descWrite, 0)
		}, 0, "direction"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := &cowImage{base: make([]byte, 64*512), over: map[int64][]byte{}}
			d := newDriver(t, img, 8)
			tc.setup(d)
			d.submit(tc.head, 8)
			require.Len(t, d.faults, 1)
			assert.Contains(t, d.faults[0].Error(), "bad descriptor")
			assert.Contains(t, d.faults[0].Error(), tc.want)
			assert.Empty(t, img.over, "nothing written")
			// A broken device stays quiet until reset.
			d.submit(0, 8)
			assert.Len(t, d.faults, 1)
		})
	}
}

func TestBlockBadRings(t *testing.T) {
	img := &cowImage{base: make([]byte, 4096), over: map[int64][]byte{}}
	for _, tc := range []struct {
		name              string
		num               uint32
		desc, avail, used uint32
		want              string
	}{
		{"size not power of two", 6, tDesc, tAvail, tUsed, "power of two"},
		{"size too big", 512, tDesc, tAvail, tUsed, "power of two"},
		{"desc outside RAM", 8, tRAM - 64, tAvail, tUsed, "descriptor table"},
		{"used misaligned", 8, tDesc, tAvail, tUsed + 2, "misaligned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &driver{t: t, mem: guest.New(guest.Region{GPA: 0, Data: make([]byte, tRAM)})}
			d.b = NewBlock(d.mem, img, "d", nil, func(err error) { d.faults = append(d.faults, err) })
			d.w32(mmioQueueNum, tc.num)
			d.w32(mmioQueueDescLo, tc.desc)
			d.w32(mmioQueueAvailLo, tc.avail)
			d.w32(mmioQueueUsedLo, tc.used)
			d.w32(mmioQueueReady, 1)
			require.Len(t, d.faults, 1)
			assert.Contains(t, d.faults[0].Error(), tc.want)
			assert.Zero(t, d.r32(mmioQueueReady))
		})
	}
	// Available index far ahead of what the queue can hold.
	d := newDriver(t, img, 8)
	require.NoError(t, d.mem.PutUint16(tAvail+2, 100))
	d.w32(mmioQueueNotify, 0)
	require.Len(t, d.faults, 1)
	assert.Contains(t, d.faults[0].Error(), "ahead")
}
