package vmm

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/vmconv/vmconv/vmm/loader"
)

// loadKernel reads an ELF or a bzImage. A bzImage's unpacked payload is kept
// under the user's cache directory, named by the payload's SHA-256, so the
// next boot of the same kernel skips the unpacking (seconds for an xz kernel).
// A cached ELF is mapped, not read: its segments are copied straight from
// the page cache into guest RAM, and release unmaps it once they are.
func loadKernel(b []byte) (k *loader.Kernel, release func(), err error) {
	release = func() {}
	if bytes.HasPrefix(b, []byte(elf.ELFMAG)) {
		k, err = loader.LoadELFBytes(b)
		return k, release, err
	}
	if k, err = loader.ReadSetup(bytes.NewReader(b), int64(len(b))); err != nil {
		return nil, release, err
	}
	sum := sha256.Sum256(k.Payload)
	cache := ""
	if dir, err := os.UserCacheDir(); err == nil {
		cache = filepath.Join(dir, "vmconv", "vmlinux", hex.EncodeToString(sum[:]))
	}
	if cache != "" {
		if inner, unmap, err := mapELF(cache); err == nil {
			k.Segments, k.Entry, k.PVHEntry, k.Payload = inner.Segments, inner.Entry, inner.PVHEntry, nil
			return k, unmap, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			os.Remove(cache) // damaged: unpack again
		}
	}
	k, err = unpackKernel(k, cache)
	return k, release, err
}

// mapELF maps the ELF at path read-only and loads it from the mapping.
func mapELF(path string) (*loader.Kernel, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.Size() == 0 || fi.Size() > loader.MaxKernel {
		return nil, nil, fmt.Errorf("%s: %d bytes", path, fi.Size())
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		return nil, nil, err
	}
	unmap := func() { unix.Munmap(m) }
	k, err := loader.LoadELFBytes(m)
	if err != nil {
		unmap()
		return nil, nil, err
	}
	return k, unmap, nil
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
