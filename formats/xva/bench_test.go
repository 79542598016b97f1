package xva

import (
	"context"
	"io"
	"math/rand"
	"testing"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/neutral"
)

// patternReader serves a size-byte disk from one random MiB repeated, with
// every fourth MiB zero (skipped chunks).
type patternReader struct{ block []byte }

func (p patternReader) ReadAt(b []byte, off int64) (int, error) {
	for n := 0; n < len(b); {
		o := off + int64(n)
		k := copy(b[n:], p.block[o%ChunkSize:])
		if (o/ChunkSize)%4 == 3 {
			clear(b[n : n+k])
		}
		n += k
	}
	return len(b), nil
}

func benchmarkWrite(b *testing.B, kind string) {
	block := make([]byte, ChunkSize)
	rand.New(rand.NewSource(1)).Read(block)
	const size = 256 << 20
	b.SetBytes(size)
	for b.Loop() {
		vm := &neutral.VM{Name: "bench", Firmware: "bios", CPUs: 1, CoresPerSocket: 1, MemoryMiB: 512,
			Disks: []neutral.Disk{{ID: "xvda", Device: "disk", Bus: "xen", Image: disk.FromReaderAt(patternReader{block}, size)}}}
		if err := Write(context.Background(), io.Discard, vm, Options{Checksum: kind}, disk.CopyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// CPU cost of writing, without disk I/O (MB/s of virtual size).
func BenchmarkWriteSHA1(b *testing.B)   { benchmarkWrite(b, ChecksumSHA1) }
func BenchmarkWriteXXHash(b *testing.B) { benchmarkWrite(b, ChecksumXXHash) }
