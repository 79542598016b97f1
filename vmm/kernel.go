package vmm

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vmconv/vmconv/vmm/loader"
)

// loadKernel reads an ELF or a bzImage. A bzImage's unpacked payload is kept
// under the user's cache directory, named by the payload's SHA-256, so the
// next boot of the same kernel skips the unpacking (seconds for an xz kernel).
// The segments are slices of the file's bytes, not copies.
func loadKernel(b []byte) (k *loader.Kernel, err error) {
	if bytes.HasPrefix(b, []byte(elf.ELFMAG)) {
		return loader.LoadELFBytes(b)
	}
	if k, err = loader.ReadSetup(bytes.NewReader(b), int64(len(b))); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(k.Payload)
	cache := ""
	if dir, err := os.UserCacheDir(); err == nil {
		cache = filepath.Join(dir, "vmconv", "vmlinux", hex.EncodeToString(sum[:]))
	}
	if cache != "" {
		if inner, err := readELF(cache); err == nil {
			k.Segments, k.Entry, k.PVHEntry, k.Payload = inner.Segments, inner.Entry, inner.PVHEntry, nil
			return k, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			os.Remove(cache) // damaged: unpack again
		}
	}
	return unpackKernel(k, cache)
}

// readELF reads the cached ELF at path and loads it; its segments are
// slices of the one buffer, which is garbage once they are copied into
// guest RAM. (Not mapped: the lab reads the cache over 9p, where a mapping
// buys nothing and its page faults are one more thing to go wrong.)
func readELF(path string) (*loader.Kernel, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return loader.LoadELFBytes(b)
}

// unpackKernel decompresses a bzImage's payload, loads the ELF inside and
// stores it in the cache.
func unpackKernel(k *loader.Kernel, cache string) (*loader.Kernel, error) {
	elfBytes, comp, err := loader.Unpack(k.Payload)
	if err != nil {
		return nil, err
	}
	inner, err := loader.LoadELFBytes(elfBytes)
	if err != nil {
		return nil, err
	}
	if cache != "" {
		storeCache(cache, elfBytes)
	}
	k.Compression = comp
	k.Segments, k.Entry, k.PVHEntry, k.Payload = inner.Segments, inner.Entry, inner.PVHEntry, nil
	return k, nil
}

// storeCache writes b atomically; failures only cost the next boot time.
func storeCache(path string, b []byte) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".vmlinux-*")
	if err != nil {
		return
	}
	_, werr := f.Write(b)
	cerr := f.Close()
	if werr != nil || cerr != nil || os.Rename(f.Name(), path) != nil {
		os.Remove(f.Name())
	}
}
