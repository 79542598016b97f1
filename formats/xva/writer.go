package xva

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/createopt"
	"github.com/vmconv/vmconv/formats/neutral"
)

// Options are the XVA writer's -o settings.
type Options struct {
	// Checksum is ChecksumSHA1 (.checksum files, the default: every xapi
	// version verifies them) or ChecksumXXHash (.xxhash files, read only by
	// Citrix Hypervisor 8.1 / XCP-ng 8.1 and later).
	Checksum string
	// Compress is "" (a plain tar), CompressGzip (what "xe vm-export
	// compress=true" writes; every xapi imports it) or CompressZstd (XCP-ng
	// and Citrix Hypervisor 8 and later; many times faster).
	Compress string
}

// The compressions an export may have.
const (
	CompressGzip = "gzip"
	CompressZstd = "zstd"
)

// OptionHelp lists the -o settings ParseOptions takes.
var OptionHelp = []createopt.Help{
	{Name: "checksum", Value: "<str>", Text: "chunk checksums: sha1 (default, verified by every xapi) or xxhash (XCP-ng / Citrix Hypervisor 8.1 and later)"},
	{Name: "compress", Value: "<str>", Text: "compress the whole export: off (default), gzip or on (what xe vm-export compress=true writes, imported by every xapi), zstd (XCP-ng, Citrix Hypervisor 8 and later)"},
}

// ParseOptions reads -o key=value settings: checksum=sha1|xxhash.
func ParseOptions(kv map[string]string) (Options, error) {
	opt := Options{Checksum: ChecksumSHA1}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := kv[k]
		switch k {
		case "checksum":
			switch strings.ToLower(v) {
			case "sha1", "sha-1", "checksum":
				opt.Checksum = ChecksumSHA1
			case "xxhash", "xxh64", "xxhash64":
				opt.Checksum = ChecksumXXHash
			default:
				return Options{}, fmt.Errorf("xva: -o checksum=%s: want sha1 or xxhash", v)
			}
		case "compress":
			c, err := parseCompress(v)
			if err != nil {
				return Options{}, fmt.Errorf("xva: -o compress=%s: %w", v, err)
			}
			opt.Compress = c
		default:
			return Options{}, fmt.Errorf("xva: unknown option %q (known: %s)", k, createopt.Known(OptionHelp))
		}
	}
	return opt, nil
}

func parseCompress(v string) (string, error) {
	switch strings.ToLower(v) {
	case CompressGzip, CompressZstd:
		return strings.ToLower(v), nil
	case "none":
		return "", nil
	}
	on, err := createopt.Bool(v)
	if err != nil {
		return "", errors.New("want off, gzip (or on) or zstd")
	}
	if on {
		return CompressGzip, nil // as xapi's compress=true
	}
	return "", nil
}

// Write writes vm as an XVA to w, in one pass (w may be a pipe): ova.xml,
// then the chunks of every disk in VDI id string order, each followed by its
// checksum file, the whole compressed when opt says so. Disks must have
// Image set; CD drives come out empty.
func Write(ctx context.Context, w io.Writer, vm *neutral.VM, opt Options, copyOpt disk.CopyOptions) error {
	if opt.Compress == "" {
		return writeTar(ctx, w, vm, opt, copyOpt)
	}
	cw, err := compressor(w, opt.Compress)
	if err != nil {
		return err
	}
	if err := writeTar(ctx, cw, vm, opt, copyOpt); err != nil {
		cw.Close()
		return err
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("xva: %s: %w", opt.Compress, err)
	}
	return nil
}

// compressor wraps w in the export's compression, both at their fastest
// levels: the point is a smaller transfer, not the smallest file. Both run
// on every core; zstd is smaller too (on the bench's 1 GiB ext4 image, 471
// MB plain: gzip 207 MB for 4.2 core-seconds, zstd 183 MB for 4.1, 161 MB at
// zstd's default level for 7.5). One-core gzip took 2.6 times as long.
func compressor(w io.Writer, kind string) (io.WriteCloser, error) {
	switch kind {
	case CompressGzip:
		gw, err := pgzip.NewWriterLevel(w, pgzip.BestSpeed)
		if err != nil {
			return nil, err
		}
		// 1 MiB blocks deflated on every core, two in flight per core: one
		// gzip member any gunzip reads.
		return gw, gw.SetConcurrency(1<<20, 2*disk.Cores())
	case CompressZstd:
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(disk.Cores()))
	}
	return nil, fmt.Errorf("xva: compression %q", kind)
}

func writeTar(ctx context.Context, w io.Writer, vm *neutral.VM, opt Options, copyOpt disk.CopyOptions) error {
	if opt.Checksum == "" {
		opt.Checksum = ChecksumSHA1
	}
	if opt.Checksum != ChecksumSHA1 && opt.Checksum != ChecksumXXHash {
		return fmt.Errorf("xva: checksum kind %q", opt.Checksum)
	}
	doc, streamed, err := fromNeutral(vm)
	if err != nil {
		return fmt.Errorf("xva: %w", err)
	}
	xml := doc.Marshal()
	if len(xml) > MaxOvaXMLSize {
		return fmt.Errorf("xva: ova.xml would be %d bytes, more than readers accept", len(xml))
	}
	tw := tar.NewWriter(w)
	if err := writeEntry(tw, "ova.xml", xml); err != nil {
		return fmt.Errorf("xva: %w", err)
	}
	for _, s := range streamed {
		d := &vm.Disks[s.disk]
		dw := &diskWriter{tw: tw, dir: s.ref, size: s.size, kind: opt.Checksum}
		if err := disk.Copy(ctx, d.Image, dw, copyOpt); err != nil {
			return fmt.Errorf("xva: disk %s (VDI %s): %w", d.ID, s.ref, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("xva: %w", err)
	}
	return nil
}

// epoch is the modification time of every entry, so output is reproducible.
var epoch = time.Unix(0, 0)

func writeEntry(tw *tar.Writer, name string, data []byte) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644, ModTime: epoch, Format: tar.FormatUSTAR}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// diskWriter is a disk.Writer that writes one VDI's chunks as tar entries.
// Checksums are computed by Prepare on the copy engine's workers.
type diskWriter struct {
	tw   *tar.Writer
	dir  string
	size int64
	kind string
	next int64 // first chunk index not yet written
	err  error

	zeroSums map[int]string
}

func (w *diskWriter) Prepare(c *disk.Chunk) error {
	c.Prepared = checksumText(w.kind, c.Data[:c.Length])
	return nil
}

func (w *diskWriter) chunkName(i int64) string { return fmt.Sprintf("%s/%08d", w.dir, i) }

func (w *diskWriter) lastIndex() int64 { return (w.size - 1) / ChunkSize }

func (w *diskWriter) chunkLen(i int64) int { return int(min(ChunkSize, w.size-i*ChunkSize)) }

// writeZero writes the all-zero chunk i, for the mandatory first and last.
func (w *diskWriter) writeZero(i int64) error {
	n := w.chunkLen(i)
	return w.writeChunk(i, zeroChunk[:n], w.zeroSum(n))
}

func (w *diskWriter) writeChunk(i int64, data []byte, sum string) error {
	if err := writeEntry(w.tw, w.chunkName(i), data); err != nil {
		return err
	}
	if err := writeEntry(w.tw, w.chunkName(i)+"."+w.kind, []byte(sum)); err != nil {
		return err
	}
	w.next = i + 1
	return nil
}

func (w *diskWriter) WriteChunk(c *disk.Chunk) error {
	if w.err != nil {
		return w.err
	}
	i := c.Offset / ChunkSize
	if c.Offset%ChunkSize != 0 || i < w.next || c.Length != w.chunkLen(i) {
		w.err = fmt.Errorf("chunk at %#x (+%d) out of order or misaligned", c.Offset, c.Length)
		return w.err
	}
	if i > 0 && w.next == 0 {
		// xapi's importer needs chunk 0: it takes its length as the unit.
		if w.err = w.writeZero(0); w.err != nil {
			return w.err
		}
	}
	var err error
	if c.Zero || c.Data == nil {
		err = w.writeZero(i)
	} else {
		sum, _ := c.Prepared.(string)
		if sum == "" {
			sum = checksumText(w.kind, c.Data[:c.Length])
		}
		err = w.writeChunk(i, c.Data[:c.Length], sum)
	}
	if err != nil {
		w.err = err
	}
	return err
}

// Close writes the last chunk when it was all zeros: xapi reads until
// virtual_size bytes have arrived.
func (w *diskWriter) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.size == 0 {
		return nil
	}
	if w.next == 0 {
		if w.err = w.writeZero(0); w.err != nil {
			return w.err
		}
	}
	if last := w.lastIndex(); w.next <= last {
		w.err = w.writeZero(last)
	}
	return w.err
}

var zeroChunk = make([]byte, ChunkSize)

// zeroSum returns the checksum of n zero bytes; a disk has at most two
// chunk lengths, so the cache stays tiny.
func (w *diskWriter) zeroSum(n int) string {
	if s, ok := w.zeroSums[n]; ok {
		return s
	}
	if w.zeroSums == nil {
		w.zeroSums = map[int]string{}
	}
	s := checksumText(w.kind, zeroChunk[:n])
	w.zeroSums[n] = s
	return s
}
