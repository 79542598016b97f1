package vmm

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"os"
	"path/filepath"

	"github.com/vmconv/vmconv/vmm/loader"
)

// loadKernel reads an ELF or a bzImage. A bzImage's unpacked payload is kept
// under the user's cache directory, named by the payload's SHA-256, so the
// next boot of the same kernel skips the unpacking (seconds for an xz kernel).
func loadKernel(b []byte) (*loader.Kernel, error) {
	if bytes.HasPrefix(b, []byte(elf.ELFMAG)) {
		return loader.LoadELF(bytes.NewReader(b), int64(len(b)))
	}
	k, err := loader.ReadSetup(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(k.Payload)
	cache := ""
	if dir, err := os.UserCacheDir(); err == nil {
		cache = filepath.Join(dir, "vmconv", "vmlinux", hex.EncodeToString(sum[:]))
	}
	if cache != "" {
		if c, err := os.ReadFile(cache); err == nil {
			if inner, err := loader.LoadELF(bytes.NewReader(c), int64(len(c))); err == nil {
				k.Segments, k.Entry, k.PVHEntry, k.Payload = inner.Segments, inner.Entry, inner.PVHEntry, nil
				return k, nil
			}
			os.Remove(cache) // damaged: unpack again
		}
	}
	elfBytes, comp, err := loader.Unpack(k.Payload)
	if err != nil {
		return nil, err
	}
	inner, err := loader.LoadELF(bytes.NewReader(elfBytes), int64(len(elfBytes)))
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
