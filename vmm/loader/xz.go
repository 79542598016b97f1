package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// Kernel xz payloads are written with `xz --check=crc32 --x86 --lzma2=...`:
// a BCJ x86 filter before LZMA2, which github.com/ulikunitz/xz does not
// support. So the container is read here and each block's LZMA2 data is
// decoded with ulikunitz's raw LZMA2 reader, then the x86 filter undone.

const (
	maxXZDict     = 64 << 20
	xzFilterX86   = 0x04
	xzFilterLZMA2 = 0x21
)

func xzVarint(b []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < len(b) && i < 9; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1, nil
		}
	}
	return 0, 0, errors.New("bad variable-length integer")
}

// unxz decodes an xz stream into at most limit bytes.
func unxz(s []byte, limit int64) ([]byte, error) {
	if len(s) < 12+12 || !bytes.HasPrefix(s, []byte{0xfd, '7', 'z', 'X', 'Z', 0}) {
		return nil, errors.New("not an xz stream")
	}
	if crc32.ChecksumIEEE(s[6:8]) != binary.LittleEndian.Uint32(s[8:12]) {
		return nil, errors.New("stream header CRC mismatch")
	}
	check := s[7] & 0x0f
	checkSize := map[byte]int{0: 0, 1: 4, 4: 8, 10: 32}
	csz, ok := checkSize[check]
	if !ok || s[6] != 0 {
		return nil, fmt.Errorf("unsupported stream flags %#02x %#02x", s[6], s[7])
	}
	var out bytes.Buffer
	pos := 12
	for blk := 0; ; blk++ {
		if pos >= len(s) {
			return nil, errors.New("stream ends before its index")
		}
		if s[pos] == 0 { // index indicator: no more blocks
			return out.Bytes(), nil
		}
		hsz := (int(s[pos]) + 1) * 4
		if pos+hsz > len(s) {
			return nil, fmt.Errorf("block %d header at %d runs past the stream", blk, pos)
		}
		h := s[pos : pos+hsz]
		if crc32.ChecksumIEEE(h[:hsz-4]) != binary.LittleEndian.Uint32(h[hsz-4:]) {
			return nil, fmt.Errorf("block %d header CRC mismatch", blk)
		}
		flags := h[1]
		nf := int(flags&3) + 1
		p := h[2 : hsz-4]
		for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} {
			if present {
				_, n, err := xzVarint(p)
				if err != nil {
					return nil, fmt.Errorf("block %d: size field: %w", blk, err)
				}
				p = p[n:]
			}
		}
		var filters []uint64
		var dictProp byte
		for i := 0; i < nf; i++ {
			id, n, err := xzVarint(p)
			if err != nil {
				return nil, fmt.Errorf("block %d filter %d: %w", blk, i, err)
			}
			p = p[n:]
			psz, n, err := xzVarint(p)
			if err != nil || psz > uint64(len(p)-n) {
				return nil, fmt.Errorf("block %d filter %d: bad properties size", blk, i)
			}
			props := p[n : n+int(psz)]
			p = p[n+int(psz):]
			switch {
			case id == xzFilterLZMA2 && i == nf-1 && len(props) == 1 && props[0] <= 40:
				dictProp = props[0]
			case id == xzFilterX86 && i < nf-1 && (len(props) == 0 || len(props) == 4 && binary.LittleEndian.Uint32(props) == 0):
			default:
				return nil, fmt.Errorf("block %d: unsupported filter %#x (supported: x86 BCJ, LZMA2)", blk, id)
			}
			filters = append(filters, id)
		}
		dict := uint32(0xffffffff)
		if dictProp < 40 {
			dict = (2 | uint32(dictProp&1)) << (dictProp/2 + 11)
		}
		pos += hsz
		br := bytes.NewReader(s[pos:])
		// A dictionary never needs to exceed the output, and kernels use
		// 32 MiB; the cap keeps a forged header from sizing an allocation.
		dc := min(int64(dict), limit, maxXZDict)
		r, err := lzma.Reader2Config{DictCap: int(max(dc, 4096))}.NewReader2(br)
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", blk, err)
		}
		start := out.Len()
		room := limit - int64(start)
		n, err := io.Copy(&out, io.LimitReader(r, room+1))
		if err != nil {
			return nil, fmt.Errorf("block %d: LZMA2: %w", blk, err)
		}
		if n > room {
			return nil, fmt.Errorf("block %d: more than %d bytes", blk, limit)
		}
		data := out.Bytes()[start:]
		if len(filters) == 2 {
			bcjX86(data, uint32(start))
		}
		used := len(s[pos:]) - br.Len()
		pos += used
		pos += (4 - used%4) % 4 // block padding
		if pos+csz > len(s) {
			return nil, fmt.Errorf("block %d: check field past the stream", blk)
		}
		if check == 1 && crc32.ChecksumIEEE(data) != binary.LittleEndian.Uint32(s[pos:]) {
			return nil, fmt.Errorf("block %d: CRC32 of the unpacked data mismatch", blk)
		}
		pos += csz
	}
}

// bcjX86 undoes the x86 branch converter in place (xz-embedded's bcj_x86,
// run over one whole buffer whose first byte is at stream offset pos).
func bcjX86(buf []byte, pos uint32) {
	allowed := [8]bool{true, true, true, false, true, false, false, false}
	bitNum := [8]uint32{0, 1, 2, 2, 3, 3, 3, 3}
	ms := func(b byte) bool { return b == 0 || b == 0xff }
	if len(buf) <= 4 {
		return
	}
	size := uint64(len(buf) - 4)
	prevPos := ^uint64(0)
	var prevMask uint32
	for i := uint64(0); i < size; i++ {
		if buf[i]&0xfe != 0xe8 {
			continue
		}
		prevPos = i - prevPos
		if prevPos > 3 {
			prevMask = 0
		} else {
			prevMask = (prevMask << (prevPos - 1)) & 7
			if prevMask != 0 {
				b := buf[i+4-uint64(bitNum[prevMask])]
				if !allowed[prevMask] || ms(b) {
					prevPos = i
					prevMask = prevMask<<1 | 1
					continue
				}
			}
		}
		prevPos = i
		if ms(buf[i+4]) {
			src := binary.LittleEndian.Uint32(buf[i+1:])
			var dest uint32
			for {
				dest = src - (pos + uint32(i) + 5)
				if prevMask == 0 {
					break
				}
				j := bitNum[prevMask] * 8
				b := byte(dest >> (24 - j))
				if !ms(b) {
					break
				}
				src = dest ^ (1<<(32-j) - 1)
			}
			dest &= 0x01ffffff
			dest |= 0 - (dest & 0x01000000)
			binary.LittleEndian.PutUint32(buf[i+1:], dest)
			i += 4
		} else {
			prevMask = prevMask<<1 | 1
		}
	}
}
