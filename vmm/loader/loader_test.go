package loader

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/internal/testutil"
	"github.com/vmconv/vmconv/vmm/internal/probe"
)

// readelfSegments returns PT_LOAD (paddr, filesz, memsz) and the entry as
// binutils' readelf sees them.
func readelfSegments(t *testing.T, path string) ([][3]uint64, uint64) {
	testutil.RequireTool(t, "readelf")
	out := testutil.Run(t, "readelf", "-lhW", path)
	var segs [][3]uint64
	re := regexp.MustCompile(`(?m)^\s+LOAD\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)`)
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		p, _ := strconv.ParseUint(m[3], 0, 64)
		fs, _ := strconv.ParseUint(m[4], 0, 64)
		ms, _ := strconv.ParseUint(m[5], 0, 64)
		segs = append(segs, [3]uint64{p, fs, ms})
	}
	em := regexp.MustCompile(`Entry point address:\s+(\S+)`).FindStringSubmatch(out)
	require.NotNil(t, em)
	e, _ := strconv.ParseUint(em[1], 0, 64)
	return segs, e
}

func TestLoadProbeELF(t *testing.T) {
	path := probe.ELF(t)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	k, err := Load(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	segs, entry := readelfSegments(t, path)
	require.Len(t, k.Segments, len(segs))
	for i, s := range k.Segments {
		assert.Equal(t, segs[i], [3]uint64{s.PAddr, uint64(len(s.Data)), s.MemSize})
	}
	assert.Equal(t, entry, k.Entry)
	assert.Equal(t, uint64(0x1000000), k.Entry)
	// The PVH note, as readelf decodes it.
	notes := testutil.Run(t, "readelf", "-nW", path)
	m := regexp.MustCompile(`PHYS32_ENTRY[^\n]*\n?\s*.*?(0x[0-9a-f]+)`).FindStringSubmatch(notes)
	nm := testutil.Run(t, "nm", path)
	pm := regexp.MustCompile(`(?m)^([0-9a-f]+) T pvh_start$`).FindStringSubmatch(nm)
	require.NotNil(t, pm, "nm: %s", nm)
	want, _ := strconv.ParseUint(pm[1], 16, 64)
	assert.Equal(t, want, k.PVHEntry, "PVH entry is pvh_start (readelf: %v)", m)
	assert.Nil(t, k.Setup)
}

func TestLoadBzImage(t *testing.T) {
	path := probe.ELF(t)
	elfBytes, err := os.ReadFile(path)
	require.NoError(t, err)
	want, err := LoadELF(bytes.NewReader(elfBytes), int64(len(elfBytes)))
	require.NoError(t, err)
	for _, comp := range []string{"xz", "zstd", "gzip", "lz4"} {
		t.Run(comp, func(t *testing.T) {
			payload := probe.Compress(t, comp, elfBytes)
			img := probe.BzImage(payload)
			k, err := Load(bytes.NewReader(img), int64(len(img)))
			require.NoError(t, err)
			assert.Equal(t, comp, k.Compression)
			assert.Equal(t, want.Segments, k.Segments)
			assert.Equal(t, want.Entry, k.Entry)
			assert.Equal(t, want.PVHEntry, k.PVHEntry)
			assert.Equal(t, uint16(0x020f), k.Protocol)
			assert.Equal(t, img[0x1f1:0x268], k.Setup)
			assert.Equal(t, 2047, k.CmdlineMax)
			assert.Equal(t, uint64(0x7fffffff), k.InitrdAddrMax)
		})
	}
}

func TestLoadBzImageErrors(t *testing.T) {
	path := probe.ELF(t)
	elfBytes, err := os.ReadFile(path)
	require.NoError(t, err)
	good := probe.BzImage(probe.Compress(t, "gzip", elfBytes))
	le := binary.LittleEndian
	tests := []struct {
		name string
		edit func(b []byte) []byte
		want string
	}{
		{"no magic", func(b []byte) []byte { copy(b[0x202:], "XXXX"); return b }, `no "HdrS"`},
		{"boot flag", func(b []byte) []byte { b[0x1fe] = 0; return b }, "boot flag"},
		{"old protocol", func(b []byte) []byte { le.PutUint16(b[0x206:], 0x020a); return b }, "2.10"},
		{"32-bit only", func(b []byte) []byte { le.PutUint16(b[0x236:], 0); return b }, "XLF_KERNEL_64"},
		{"alignment", func(b []byte) []byte { le.PutUint32(b[0x230:], 0x3000); return b }, "kernel_alignment"},
		{"payload past end", func(b []byte) []byte { le.PutUint32(b[0x24c:], 1<<30); return b }, "outside"},
		{"payload offset huge", func(b []byte) []byte { le.PutUint32(b[0x248:], 0xffffffff); return b }, "outside"},
		{"truncated", func(b []byte) []byte { return b[:0x200] }, "too short"},
		{"unknown compression", func(b []byte) []byte { b[5*512+0x200] = 0x42; return b }, "unknown compression"},
		{"declared size too large", func(b []byte) []byte { le.PutUint32(b[len(b)-4:], 0x7fffffff); return b }, "trailing size"},
		{"declared size larger than stream", func(b []byte) []byte {
			le.PutUint32(b[len(b)-4:], le.Uint32(b[len(b)-4:])+10)
			return b
		}, "stream ends"},
		{"corrupt stream", func(b []byte) []byte {
			for i := 5*512 + 0x200 + 20; i < len(b)-8; i += 7 {
				b[i] ^= 0x55
			}
			return b
		}, "gzip"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.edit(append([]byte(nil), good...))
			_, err := Load(bytes.NewReader(b), int64(len(b)))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestZeroPage(t *testing.T) {
	path := probe.ELF(t)
	elfBytes, _ := os.ReadFile(path)
	img := probe.BzImage(probe.Compress(t, "gzip", elfBytes))
	k, err := Load(bytes.NewReader(img), int64(len(img)))
	require.NoError(t, err)
	e820 := []E820Entry{{0, 0x9fc00, E820RAM}, {0x9fc00, 0x60400, E820Reserved}, {0x100000, 0x7f00000, E820RAM}}
	zp, err := ZeroPage(k, BootParams{CmdlineAddr: 0x20000, CmdlineLen: 12, InitrdAddr: 0x7000000, InitrdSize: 0x1000, E820: e820, RSDP: 0xe0000})
	require.NoError(t, err)
	le := binary.LittleEndian
	assert.Equal(t, "HdrS", string(zp[0x202:0x206]))
	assert.Equal(t, img[0x1f1:0x210], zp[0x1f1:0x210], "setup header copied")
	assert.Equal(t, byte(0xff), zp[0x210])
	assert.Equal(t, byte(0x81), zp[0x211])
	assert.Equal(t, uint32(0x20000), le.Uint32(zp[0x228:]))
	assert.Equal(t, uint32(0x7000000), le.Uint32(zp[0x218:]))
	assert.Equal(t, uint32(0x1000), le.Uint32(zp[0x21c:]))
	assert.Equal(t, uint64(0xe0000), le.Uint64(zp[0x70:]))
	assert.Equal(t, byte(3), zp[0x1e8])
	assert.Equal(t, uint64(0x100000), le.Uint64(zp[0x2d0+40:]))
	assert.Equal(t, uint32(E820RAM), le.Uint32(zp[0x2d0+56:]))

	_, err = ZeroPage(k, BootParams{CmdlineLen: 5000})
	assert.ErrorContains(t, err, "command line")
	_, err = ZeroPage(k, BootParams{InitrdAddr: 0x7fffff00, InitrdSize: 0x1000})
	assert.ErrorContains(t, err, "initrd_addr_max")
}

// TestDebianKernel unpacks Debian's own kernel (fetched by apt-get download
// into the cache outside the checkout) and compares with xz -d of the same bytes.
func TestDebianKernel(t *testing.T) {
	vmlinuz := DebianKernel(t)
	b, err := os.ReadFile(vmlinuz)
	require.NoError(t, err)
	hdr, err := readSetup(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, hdr.Protocol, uint16(0x020c))
	ours, comp, err := Unpack(hdr.Payload)
	require.NoError(t, err)
	assert.Equal(t, "xz", comp)
	cmd := exec.Command("xz", "-dc")
	cmd.Stdin = bytes.NewReader(hdr.Payload[:len(hdr.Payload)-4])
	var theirs bytes.Buffer
	cmd.Stdout = &theirs
	require.NoError(t, cmd.Run())
	require.Equal(t, theirs.Len(), len(ours))
	assert.True(t, bytes.Equal(theirs.Bytes(), ours), "our unpacked payload equals xz -d's")
	k, err := LoadELF(bytes.NewReader(ours), int64(len(ours)))
	require.NoError(t, err)
	assert.Equal(t, uint64(0x1000000), k.Entry)
	assert.Equal(t, uint64(0x1000000), k.Segments[0].PAddr)
	assert.NotZero(t, k.PVHEntry)
}

// DebianKernel returns the path of Debian's vmlinuz from the shared cache,
// fetching it with the project's fetch script when needed.
func DebianKernel(t *testing.T) string {
	t.Helper()
	testutil.RequireTool(t, "apt-get")
	testutil.RequireTool(t, "dpkg-deb")
	out, err := exec.Command("sh", "../qemu/testdata/fetch-kernel.sh").Output()
	if err != nil {
		testutil.Unavailable(t, "cannot fetch Debian's linux-image-amd64 with apt-get download: "+err.Error())
	}
	dir := strings.TrimSpace(string(out))
	m, _ := filepathGlob(dir + "/boot/vmlinuz-*")
	if len(m) == 0 {
		t.Fatalf("no vmlinuz under %s", dir)
	}
	return m[0]
}
