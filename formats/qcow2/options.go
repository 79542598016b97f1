package qcow2

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/vmconv/vmconv/formats/createopt"
)

// Options control the writer. They are spelled like qemu-img's qcow2
// creation options, plus compress (qemu-img convert's -c).
type Options struct {
	// ClusterSize in bytes, a power of two from 512 B to 2 MiB; default 64 KiB.
	ClusterSize int64
	// Compress writes every data cluster compressed (when that makes it
	// smaller), as qemu-img convert -c does.
	Compress bool
	// CompressionType is "zlib" (default, readable by every qemu) or "zstd".
	CompressionType string
	// CompressionLevel: zstd level (1 fastest, the default); ignored for zlib,
	// whose 4 KiB window qemu imposes allows one fast encoder.
	CompressionLevel int
	// Compat is "1.1" (version 3, the default) or "0.10" (version 2, for
	// QEMU before 1.1 and tools that read only version 2).
	Compat string
	// RefcountBits is the width of a refcount, a power of two from 1 to 64;
	// default 16 (the only width of version 2).
	RefcountBits int
	// LazyRefcounts sets the lazy refcounts feature bit, as qemu-img's
	// lazy_refcounts=on: QEMU then defers refcount updates while the guest
	// runs. The refcounts written here are always exact.
	LazyRefcounts bool
	// ExtendedL2 writes extended L2 entries (qemu-img's extended_l2=on):
	// each cluster's 32 subclusters are allocated on their own, so only
	// those holding data are marked. Needs clusters of at least 16 KiB.
	ExtendedL2 bool
	// Preallocation is qemu-img's: "off" (default; only clusters holding
	// data are allocated), "metadata" (every cluster allocated, the zero
	// ones as holes of the file), "falloc" (and their blocks reserved) or
	// "full" (and their zeros written).
	Preallocation string
}

const defaultClusterSize = 64 << 10

// OptionHelp lists the -o settings ParseOptions takes.
var OptionHelp = []createopt.Help{
	{Name: "cluster_size", Value: "<size>", Text: "qcow2 cluster size, a power of two from 512 to 2M (default 64k)"},
	{Name: "compat", Value: "<str>", Text: "compatibility level: 1.1 (v3, default) or 0.10 (v2, for QEMU before 1.1)"},
	{Name: "compress", Value: "<bool (on/off)>", Text: "compress every cluster that shrinks, as qemu-img convert -c (alias c)"},
	{Name: "compression_level", Value: "<num>", Text: "zstd level, 1 (fastest, default) to 22; zlib has one level"},
	{Name: "compression_type", Value: "<str>", Text: "compression method: zlib (default, read by every qemu) or zstd"},
	{Name: "extended_l2", Value: "<bool (on/off)>", Text: "extended L2 entries: subclusters of 1/32 cluster (clusters of 16k or more, compat 1.1)"},
	{Name: "lazy_refcounts", Value: "<bool (on/off)>", Text: "postpone refcount updates in QEMU (compat 1.1 only)"},
	{Name: "preallocation", Value: "<str>", Text: "off (default: clusters holding data), metadata (every cluster, zeros as holes), falloc (blocks reserved) or full (zeros written)"},
	{Name: "refcount_bits", Value: "<num>", Text: "width of a refcount, a power of two from 1 to 64 (default 16; other widths need compat 1.1)"},
}

// ParseOptions parses -o key=value options: compat, cluster_size,
// compression_type, compress, compression_level, refcount_bits,
// lazy_refcounts, preallocation, extended_l2.
func ParseOptions(kv map[string]string) (Options, error) {
	var o Options
	for _, k := range createopt.Keys(kv) {
		v := kv[k]
		switch k {
		case "compat":
			switch v {
			case "1.1", "v3":
				o.Compat = "1.1"
			case "0.10", "v2":
				o.Compat = "0.10"
			default:
				return o, fmt.Errorf("qcow2 option compat=%q: want 1.1 (v3) or 0.10 (v2)", v)
			}
		case "cluster_size":
			n, err := createopt.Size(v)
			if err != nil || n < 512 || n > 2<<20 || n&(n-1) != 0 {
				return o, fmt.Errorf("qcow2 option cluster_size=%q: want a power of two from 512 to 2M", v)
			}
			o.ClusterSize = n
		case "compression_type":
			switch strings.ToLower(v) {
			case "zlib", "zstd":
				o.CompressionType = strings.ToLower(v)
			default:
				return o, fmt.Errorf("qcow2 option compression_type=%q: want zlib or zstd", v)
			}
		case "compress", "c":
			b, err := createopt.Bool(v)
			if err != nil {
				return o, fmt.Errorf("qcow2 option %s=%q: %w", k, v, err)
			}
			o.Compress = b
		case "compression_level":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 22 {
				return o, fmt.Errorf("qcow2 option compression_level=%q: want 1 to 22", v)
			}
			o.CompressionLevel = n
		case "refcount_bits":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 64 || n&(n-1) != 0 {
				return o, fmt.Errorf("qcow2 option refcount_bits=%q: want a power of two from 1 to 64", v)
			}
			o.RefcountBits = n
		case "lazy_refcounts":
			b, err := createopt.Bool(v)
			if err != nil {
				return o, fmt.Errorf("qcow2 option %s=%q: %w", k, v, err)
			}
			o.LazyRefcounts = b
		case "extended_l2":
			b, err := createopt.Bool(v)
			if err != nil {
				return o, fmt.Errorf("qcow2 option %s=%q: %w", k, v, err)
			}
			o.ExtendedL2 = b
		case "preallocation":
			switch v {
			case "off", "metadata", "falloc", "full":
				o.Preallocation = v
			default:
				return o, fmt.Errorf("qcow2 option preallocation=%q: want off, metadata, falloc or full", v)
			}
		case "backing_file", "backing_fmt", "data_file", "encrypt.format", "encryption":
			return o, fmt.Errorf("qcow2 option %s: not supported (conversion flattens chains; images are not encrypted)", k)
		default:
			return o, fmt.Errorf("qcow2: unknown option %q (known: %s)", k, createopt.Known(OptionHelp))
		}
	}
	return o, o.checkCompat()
}

// checkCompat refuses what version 2 cannot hold, as qemu-img does.
func (o Options) checkCompat() error {
	if o.Compat != "0.10" {
		return nil
	}
	switch {
	case o.CompressionType == "zstd":
		return fmt.Errorf("qcow2 option compression_type=zstd: needs compat=1.1")
	case o.RefcountBits != 0 && o.RefcountBits != 16:
		return fmt.Errorf("qcow2 option refcount_bits=%d: widths other than 16 need compat=1.1", o.RefcountBits)
	case o.LazyRefcounts:
		return fmt.Errorf("qcow2 option lazy_refcounts=on: needs compat=1.1")
	case o.ExtendedL2:
		return fmt.Errorf("qcow2 option extended_l2=on: needs compat=1.1")
	}
	return nil
}

func (o *Options) fill() {
	if o.ClusterSize == 0 {
		o.ClusterSize = defaultClusterSize
	}
	if o.CompressionType == "" {
		o.CompressionType = "zlib"
	}
	if o.Compat == "" {
		o.Compat = "1.1"
	}
	if o.RefcountBits == 0 {
		o.RefcountBits = 16
	}
	if o.Preallocation == "" {
		o.Preallocation = "off"
	}
}
