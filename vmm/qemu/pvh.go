package qemu

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vmconv/vmconv/vmm/loader"
)

// maxKernel bounds the kernel file read to look for a payload.
const maxKernel = 256 << 20

// Offsets in a bzImage's setup header (Documentation/arch/x86/boot.rst).
const (
	hdrSetupSects    = 0x1f1
	hdrMagic         = 0x202
	hdrPayloadOffset = 0x248
	hdrPayloadLength = 0x24c
	hdrEnd           = 0x250
)

// elfMagic starts an uncompressed vmlinux.
var elfMagic = []byte("\x7fELF")

// pvhKernel returns an ELF vmlinux with a PVH entry note for the kernel at
// path, which QEMU enters directly: a bzImage's payload is unpacked on the
// host once and cached by the kernel's SHA-256 under cacheDir, so the guest
// skips QEMU's real-mode setup and its own decompressor (about half of a TCG
// boot). It returns "" when the kernel cannot be entered that way (no PVH
// note, an unknown compression, no cache directory); the caller then boots
// the file as it is.
func pvhKernel(path, cacheDir string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if fi.Size() > maxKernel || fi.Size() < hdrEnd {
		return "", nil
	}
	head := make([]byte, len(elfMagic))
	if _, err := f.ReadAt(head, 0); err != nil {
		return "", err
	}
	if bytes.Equal(head, elfMagic) {
		k, err := loader.LoadELF(f, fi.Size())
		if err != nil || k.PVHEntry == 0 {
			return "", nil
		}
		return path, nil
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return "", err
	}
	payload, ok := bzPayload(b)
	if !ok || cacheDir == "" {
		return "", nil
	}
	sum := sha256.Sum256(b)
	cached := filepath.Join(cacheDir, hex.EncodeToString(sum[:])+".elf")
	if _, err := os.Stat(cached); err == nil {
		return cached, nil
	}
	elf, _, err := loader.Unpack(payload)
	if err != nil {
		return "", nil
	}
	k, err := loader.LoadELF(bytes.NewReader(elf), int64(len(elf)))
	if err != nil || k.PVHEntry == 0 {
		return "", nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", nil
	}
	tmp, err := os.CreateTemp(cacheDir, ".vmlinux-*")
	if err != nil {
		return "", nil
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", fmt.Errorf("caching the unpacked kernel: %w", err)
	}
	if _, err := tmp.Write(elf); err != nil {
		tmp.Close()
		return "", fmt.Errorf("caching the unpacked kernel: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("caching the unpacked kernel: %w", err)
	}
	if err := os.Rename(tmp.Name(), cached); err != nil {
		return "", fmt.Errorf("caching the unpacked kernel: %w", err)
	}
	return cached, nil
}

// bzPayload returns the compressed payload of a bzImage, checked against the
// file's size.
func bzPayload(b []byte) ([]byte, bool) {
	if len(b) < hdrEnd || string(b[hdrMagic:hdrMagic+4]) != "HdrS" {
		return nil, false
	}
	setup := int(b[hdrSetupSects])
	if setup == 0 {
		setup = 4
	}
	start := (setup + 1) * 512
	off := int64(binary.LittleEndian.Uint32(b[hdrPayloadOffset:]))
	n := int64(binary.LittleEndian.Uint32(b[hdrPayloadLength:]))
	if n == 0 || int64(start)+off+n > int64(len(b)) {
		return nil, false
	}
	return b[int64(start)+off : int64(start)+off+n], true
}

// kernelCacheDir is where unpacked kernels are kept:
// $XDG_CACHE_HOME/vmconv/vmlinux, or "" when there is no cache directory.
func kernelCacheDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "vmconv", "vmlinux")
}

// PVHKernel is the kernel at path as QEMU enters it fastest: an unpacked
// vmlinux with a PVH note (cached under the user's cache directory), or path
// itself when it cannot be unpacked.
func PVHKernel(path string) string {
	if p, err := pvhKernel(path, kernelCacheDir()); err == nil && p != "" {
		return p
	}
	return path
}
