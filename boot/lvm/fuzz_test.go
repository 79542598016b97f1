package lvm

import (
	"bytes"
	"encoding/binary"
	"flag"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/internal/testutil"
)

// metadataText is the text ReadPV found on a fixture, as it is on disk.
func metadataText(t testing.TB, name string) []byte {
	t.Helper()
	b := fixture(t, name)
	pv, err := readPV(b)
	require.NoError(t, err)
	h := MDAHeader{Start: pv.MetadataAreas[0].Offset, Size: pv.MetadataAreas[0].Size}
	off, size := rawLocn0(b)
	rl := RawLocn{Offset: off, Size: size, Checksum: binary.LittleEndian.Uint32(b[4096+56:])}
	text, err := pv.readText(h, rl)
	require.NoError(t, err)
	return text
}

const thinSeed = `vgx {
	id = "x"
	seqno = 3
	extent_size = 8192
	status = ["READ"]
	physical_volumes { pv0 { id = "a" pe_start = 2048 pe_count = 10 } }
	logical_volumes {
		pool { id = "p" status = ["READ", "VISIBLE"] segment1 { start_extent = 0 extent_count = 2 type = "thin-pool" } }
		s { id = "s" status = ["READ", "VISIBLE"] segment1 { start_extent = 0 extent_count = 2 type = "striped" stripe_count = 2 stripe_size = 128 stripes = ["pv0", 0, "pv0", 4] } }
		snapshot0 { id = "q" status = ["READ"] segment1 { start_extent = 0 extent_count = 2 type = "snapshot" origin = "s" cow_store = "s" } }
	}
}
`

// The seeds are the fixtures' metadata as stored and as vgcfgbackup writes it.
func TestFuzzSeedsParse(t *testing.T) {
	for _, text := range [][]byte{fixture(t, "vg-backup.txt"), metadataText(t, "pv-head.img"), metadataText(t, "pv-wrapped.img"), []byte(thinSeed)} {
		vg, err := ParseMetadata(text)
		require.NoError(t, err)
		assert.NotEmpty(t, vg.LVs())
	}
}

func FuzzParseMetadata(f *testing.F) {
	f.Add(fixture(f, "vg-backup.txt"))
	f.Add(metadataText(f, "pv-head.img"))
	f.Add(metadataText(f, "pv-wrapped.img"))
	f.Add([]byte(thinSeed))
	f.Fuzz(func(t *testing.T, text []byte) {
		testutil.Bounded(t, 4<<20+64*uint64(len(text)), func() {
			vg, err := ParseMetadata(text)
			if err != nil {
				return
			}
			for _, lv := range vg.LVs() {
				require.Error(t, lv.Err, "%s opens with no devices", lv.Name)
			}
		})
	})
}

// FuzzReadPV reads mutated PV header regions, and every LV of the VG they
// describe with the input itself as the device: once as they are, and once
// with their checksums made right, so that mutations get past them to the
// area headers and the text. Inputs shorter than the fixtures' 64 KiB are
// padded with zeros, so a seed need not carry the zeros after its text.
func FuzzReadPV(f *testing.F) {
	f.Add(bytes.TrimRight(fixture(f, "pv-head.img"), "\x00"))
	f.Add(fixture(f, "pv-wrapped.img"))
	// The fuzzer shrinks each new interesting input for up to a minute by
	// default, and inputs this large take it that long: the search stalls.
	if fl := flag.Lookup("test.fuzzminimizetime"); fl != nil && fl.Value.String() == fl.DefValue {
		_ = fl.Value.Set("5x")
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		b := in
		if len(b) < 64<<10 {
			b = make([]byte, 64<<10)
			copy(b, in)
		}
		testutil.Bounded(t, 4<<20+128*uint64(len(b)), func() {
			fuzzPV(t, b)
			fixed := bytes.Clone(b)
			fixChecksums(fixed)
			fuzzPV(t, fixed)
		})
	})
}

// fixChecksums sets the label's, the metadata area headers' and their
// texts' checksums to match what is there.
func fixChecksums(b []byte) {
	le := binary.LittleEndian
	for s := 0; s < labelScan && (s+1)*sectorSize <= len(b); s++ {
		sec := b[s*sectorSize : (s+1)*sectorSize]
		if string(sec[:8]) != labelID {
			continue
		}
		le.PutUint32(sec[16:], lvmCRC(sec[20:]))
		pv, err := parseLabel(sec, s)
		if err != nil {
			return
		}
		for _, a := range pv.MetadataAreas {
			if a.Offset > uint64(len(b)) || uint64(len(b))-a.Offset < mdaHeaderSize {
				continue
			}
			area := b[a.Offset:]
			hdr := area[:mdaHeaderSize]
			off, size, msize := le.Uint64(hdr[40:]), le.Uint64(hdr[48:]), le.Uint64(hdr[32:])
			if msize <= uint64(len(area)) && off >= mdaHeaderSize && off < msize && size > 0 && size <= msize-mdaHeaderSize {
				first := min(size, msize-off)
				text := append(bytes.Clone(area[off:off+first]), area[mdaHeaderSize:mdaHeaderSize+size-first]...)
				le.PutUint32(hdr[56:], lvmCRC(text))
			}
			le.PutUint32(hdr, lvmCRC(hdr[4:]))
		}
		return
	}
}

// fixChecksums leaves the real fixtures as they are.
func TestFixChecksums(t *testing.T) {
	for _, name := range []string{"pv-head.img", "pv-wrapped.img"} {
		b := fixture(t, name)
		c := bytes.Clone(b)
		fixChecksums(c)
		assert.Equal(t, b, c, name)
		c[4096+40+64] ^= 1 // a byte of the second raw_locn, covered by the header checksum
		_, err := readPV(c)
		require.Error(t, err)
		fixChecksums(c)
		_, err = readPV(c)
		assert.NoError(t, err)
	}
}

func fuzzPV(t *testing.T, b []byte) {
	pv, err := ReadPV(bytes.NewReader(b), int64(len(b)))
	if err != nil || pv.VG == nil {
		return
	}
	vg, err := Assemble([]*PV{pv})
	require.NoError(t, err)
	buf := make([]byte, 4096)
	for _, lv := range vg.LVs() {
		m, merr := vg.Mapping(lv.Name)
		r, size, err := vg.Open(lv.Name)
		// The device-mapper table exists exactly when the LV can be read,
		// and covers it.
		assert.Equal(t, err == nil, merr == nil, "Open: %v; Mapping: %v", err, merr)
		if err != nil {
			continue
		}
		assert.Equal(t, lv.Size, size)
		var sectors uint64
		for _, tg := range m.Targets {
			assert.Equal(t, sectors, tg.Start)
			assert.NotEmpty(t, tg.Areas)
			sectors += tg.Length
		}
		assert.Equal(t, uint64(size)/sectorSize, sectors)
		for _, off := range []int64{0, size / 2, size - 100} {
			if off >= 0 {
				_, _ = r.ReadAt(buf, off)
			}
		}
	}
}
