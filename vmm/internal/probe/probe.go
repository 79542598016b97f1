// Package probe builds the probe guest (vmm/testdata/probe) for tests and
// wraps it the way the kernel build wraps vmlinux: compressed by the real
// compressors with the size appended, inside a bzImage-layout file.
package probe

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/vmconv/vmconv/internal/testutil"
)

var (
	once    sync.Once
	elfPath string
	elfErr  string
)

// Dir is the probe's source directory.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "probe")
}

// ELF builds the probe and returns its path. The build is cached under the
// user's cache directory by a hash of the probe's sources, so the test
// processes that run in the KVM lab (where gcc runs under TCG) find it built.
func ELF(t testing.TB) string {
	t.Helper()
	once.Do(func() { elfPath, elfErr = build() })
	if elfErr != "" {
		if strings.Contains(elfErr, "gcc") {
			testutil.RequireTool(t, "gcc")
		}
		t.Fatal(elfErr)
	}
	return elfPath
}

func build() (string, string) {
	h := sha256.New()
	for _, f := range []string{"build.sh", "entry.S", "probe.c", "probe.ld"} {
		b, err := os.ReadFile(filepath.Join(Dir(), f))
		if err != nil {
			return "", err.Error()
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "vmconv", "probe")
	out := filepath.Join(dir, hex.EncodeToString(h.Sum(nil))[:16]+".elf")
	if _, err := os.Stat(out); err == nil {
		return out, ""
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		return "", "building the probe needs gcc: " + err.Error()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err.Error()
	}
	tmp := fmt.Sprintf("%s.%d", out, os.Getpid())
	defer os.Remove(tmp)
	if b, err := exec.Command("sh", filepath.Join(Dir(), "build.sh"), tmp).CombinedOutput(); err != nil {
		return "", "building the probe: " + err.Error() + "\n" + string(b)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err.Error()
	}
	return out, ""
}

// Compressors as the kernel build runs them (scripts/Makefile.lib).
var Compressors = map[string][]string{
	"xz":   {"xz", "--check=crc32", "--x86", "--lzma2=,dict=1MiB", "-c"},
	"zstd": {"zstd", "-19", "-c", "-q"},
	"gzip": {"gzip", "-n", "-9", "-c"},
	"lz4":  {"lz4", "-l", "-9", "-c", "-q"},
}

// Compress runs the named compressor on data and appends the uncompressed
// size, as the kernel's size_append does.
func Compress(t testing.TB, kind string, data []byte) []byte {
	t.Helper()
	argv, ok := Compressors[kind]
	if !ok {
		t.Fatalf("no compressor %q", kind)
	}
	testutil.RequireTool(t, argv[0])
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(data)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, errb.String())
	}
	return binary.LittleEndian.AppendUint32(out.Bytes(), uint32(len(data)))
}

// BzImage lays out payload as a bzImage: 4 setup sectors after the boot
// sector, a setup header (protocol 2.15, 64-bit entry), and a protected-mode
// part holding the payload at payload_offset.
func BzImage(payload []byte) []byte {
	const setupSects = 4
	pm := (setupSects + 1) * 512
	const poff = 0x200 // room for a decompressor stub
	img := make([]byte, pm+poff+len(payload))
	le := binary.LittleEndian
	img[0x1f1] = setupSects
	le.PutUint16(img[0x1fe:], 0xaa55)
	img[0x200], img[0x201] = 0xeb, 0x66 // jmp to 0x268: header length
	copy(img[0x202:], "HdrS")
	le.PutUint16(img[0x206:], 0x020f)
	img[0x211] = 0x01 // LOADED_HIGH
	le.PutUint32(img[0x214:], 0x100000)
	le.PutUint32(img[0x22c:], 0x7fffffff)
	le.PutUint32(img[0x230:], 0x200000)
	img[0x234] = 1
	le.PutUint16(img[0x236:], 0x3) // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
	le.PutUint32(img[0x238:], 2047)
	le.PutUint32(img[0x248:], poff)
	le.PutUint32(img[0x24c:], uint32(len(payload)))
	le.PutUint64(img[0x258:], 0x1000000)
	le.PutUint32(img[0x260:], 0x1000000)
	copy(img[pm+poff:], payload)
	return img
}
