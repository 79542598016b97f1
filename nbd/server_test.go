package nbd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
)

const testSize = 40 << 20

// testRegions are the data of the test image; everything else is a hole.
func testRegions() map[int64][]byte {
	return map[int64][]byte{
		0:                 pattern(1<<20+100, 1),
		5 << 20:           pattern(64<<10, 2),
		20<<20 + 4096:     pattern(3<<20, 3),
		testSize - 8192:   pattern(8192, 4),
		12<<20 + 512*1000: pattern(512, 5),
	}
}

func nbdURI(sock, name string) string {
	return fmt.Sprintf("nbd+unix:///%s?socket=%s", name, sock)
}

func TestQemuImgInfoAndConvert(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img")
	path, img := sparseRaw(t, testSize, testRegions())
	sock := startServer(t, &Server{Exports: map[string]Export{"vm": {Image: img}}})

	out := testutil.Run(t, qemuImg, "info", "--output=json", nbdURI(sock, "vm"))
	var info struct {
		VirtualSize int64  `json:"virtual-size"`
		Format      string `json:"format"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &info), out)
	assert.Equal(t, int64(testSize), info.VirtualSize)
	assert.Equal(t, "raw", info.Format)

	dst := filepath.Join(t.TempDir(), "out.raw")
	testutil.Run(t, qemuImg, "convert", "-f", "raw", "-O", "raw", nbdURI(sock, "vm"), dst)
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	got, err := os.ReadFile(dst)
	require.NoError(t, err)
	require.Equal(t, len(want), len(got))
	require.True(t, bytes.Equal(want, got), "converted image differs from the source")
}

// TestQemuImgMap checks that qemu-img sees our allocation map through
// NBD_CMD_BLOCK_STATUS: every range it reports agrees with disk.Raw's Extents.
func TestQemuImgMap(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img")
	_, img := sparseRaw(t, testSize, testRegions())
	sock := startServer(t, &Server{Exports: map[string]Export{"vm": {Image: img}}})

	out := testutil.Run(t, qemuImg, "map", "--output=json", "-f", "raw", nbdURI(sock, "vm"))
	var m []struct {
		Start  int64 `json:"start"`
		Length int64 `json:"length"`
		Data   bool  `json:"data"`
		Zero   bool  `json:"zero"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &m), out)
	ext, err := img.Extents(0, testSize)
	require.NoError(t, err)

	holes, covered := 0, int64(0)
	for _, r := range m {
		require.Equal(t, covered, r.Start, "qemu-img map is not contiguous")
		covered += r.Length
		if !r.Data {
			holes++
		}
		for _, e := range ext {
			if e.End() <= r.Start || e.Offset >= r.Start+r.Length {
				continue
			}
			assert.Equal(t, e.Kind != disk.Unallocated, r.Data, "range %#x+%#x vs extent %+v", r.Start, r.Length, e)
			assert.Equal(t, e.Kind != disk.Data, r.Zero, "range %#x+%#x vs extent %+v", r.Start, r.Length, e)
		}
	}
	assert.Equal(t, int64(testSize), covered)
	assert.Greater(t, holes, 2, "qemu-img saw no holes: block status not used")
}

// TestQemuIOWritableOverlay writes through NBD into a copy-on-write overlay,
// reads the data back both through NBD and from the overlay, and checks the
// base image did not change.
func TestQemuIOWritableOverlay(t *testing.T) {
	qemuIO := testutil.RequireTool(t, "qemu-io")
	path, img := sparseRaw(t, testSize, testRegions())
	before := fileHash(t, path)
	ov, err := disk.NewOverlay(img)
	require.NoError(t, err)
	defer ov.Close()
	sock := startServer(t, &Server{Exports: map[string]Export{"vm": {Image: ov, Writable: true}}})

	out := testutil.Run(t, qemuIO, "-f", "raw",
		"-c", "write -P 0x5a 0 64k",
		"-c", "aio_write -P 0x11 8M 1M",
		"-c", "aio_write -P 0x22 9M 1M",
		"-c", "aio_write -P 0x33 30M 4k",
		"-c", "aio_flush",
		"-c", "flush",
		"-c", "discard 16M 1M",
		"-c", "write -z 512k 64k",
		"-c", "read -P 0 512k 64k",
		"-c", "read -P 0x5a 0 64k",
		"-c", "read -P 0x22 9M 1M",
		nbdURI(sock, "vm"))
	assert.NotContains(t, out, "Pattern verification failed")
	assert.NotContains(t, strings.ToLower(out), "error")

	orig := testRegions()[0]
	for _, c := range []struct {
		off  int64
		n    int
		want []byte
	}{
		{0, 64 << 10, bytes.Repeat([]byte{0x5a}, 64<<10)},
		{64 << 10, 512<<10 - 64<<10, orig[64<<10 : 512<<10]},
		{512 << 10, 64 << 10, make([]byte, 64<<10)},
		{576 << 10, 1<<20 + 100 - 576<<10, orig[576<<10:]},
		{8 << 20, 1 << 20, bytes.Repeat([]byte{0x11}, 1<<20)},
		{9 << 20, 1 << 20, bytes.Repeat([]byte{0x22}, 1<<20)},
		{30 << 20, 4096, bytes.Repeat([]byte{0x33}, 4096)},
		{5 << 20, 64 << 10, testRegions()[5<<20]},
	} {
		got := make([]byte, c.n)
		_, err := ov.ReadAt(got, c.off)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(c.want, got), "overlay at %#x+%#x", c.off, c.n)
	}
	assert.Equal(t, before, fileHash(t, path), "the base image changed")
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return sha256.Sum256(b)
}

// TestQemuReadOnlyExport: qemu refuses to open a read-only export for
// writing, and reads still work.
func TestQemuReadOnlyExport(t *testing.T) {
	qemuIO := testutil.RequireTool(t, "qemu-io")
	_, img := sparseRaw(t, testSize, testRegions())
	sock := startServer(t, &Server{Exports: map[string]Export{"vm": {Image: img}}})
	out, err := exec.Command(qemuIO, "-f", "raw", "-c", "write -P 0x5a 0 4k", nbdURI(sock, "vm")).CombinedOutput()
	require.Error(t, err, "qemu-io opened a read-only export for writing: %s", out)
	assert.Regexp(t, `(?i)permission denied|read-only`, string(out))
	out2 := testutil.Run(t, qemuIO, "-r", "-f", "raw", "-c", "read -P 0 2M 1M", nbdURI(sock, "vm"))
	assert.NotContains(t, out2, "Pattern verification failed")
}

func TestHandshakeOptions(t *testing.T) {
	a := disk.FromReaderAt(bytes.NewReader(pattern(1<<20+3, 7)), 1<<20+3)
	b := disk.FromReaderAt(bytes.NewReader(pattern(4096, 8)), 4096)
	srv := &Server{Exports: map[string]Export{
		"a": {Image: a, Description: "first disk"},
		"b": {Image: b},
	}}
	sock := startServer(t, srv)

	t.Run("list", func(t *testing.T) {
		c := dial(t, sock)
		hello(t, c, clientFixedNewstyle)
		sendOpt(t, c, optList, nil)
		rs := readOptReplies(t, c, optList)
		require.Len(t, rs, 3)
		assert.Equal(t, uint32(repServer), rs[0].typ)
		assert.Equal(t, "a", string(rs[0].data[4:4+be.Uint32(rs[0].data)]))
		assert.Equal(t, "first disk", string(rs[0].data[5:]))
		assert.Equal(t, "b", string(rs[1].data[4:]))
		assert.Equal(t, uint32(repAck), rs[2].typ)
		sendOpt(t, c, optList, []byte{1})
		assert.Equal(t, uint32(repErrInvalid), readOptReplies(t, c, optList)[0].typ)
		sendOpt(t, c, optAbort, nil)
		assert.Equal(t, uint32(repAck), readOptReplies(t, c, optAbort)[0].typ)
		assert.True(t, closedByServer(c))
	})

	t.Run("info then go", func(t *testing.T) {
		c := dial(t, sock)
		hello(t, c, clientFixedNewstyle|clientNoZeroes)
		sendOpt(t, c, optInfo, goData("a", infoName, infoDescription, infoBlockSize))
		rs := readOptReplies(t, c, optInfo)
		got := map[uint16][]byte{}
		for _, r := range rs[:len(rs)-1] {
			require.Equal(t, uint32(repInfo), r.typ)
			got[be.Uint16(r.data)] = r.data[2:]
		}
		require.Equal(t, uint32(repAck), rs[len(rs)-1].typ)
		require.Len(t, got[infoExport], 10)
		assert.Equal(t, uint64(1<<20+3), be.Uint64(got[infoExport]))
		flags := be.Uint16(got[infoExport][8:])
		assert.NotZero(t, flags&tflagReadOnly)
		assert.NotZero(t, flags&tflagSendFlush)
		assert.Zero(t, flags&(tflagSendTrim|tflagSendWriteZeroes|tflagSendDF))
		require.Len(t, got[infoBlockSize], 12)
		assert.Equal(t, []uint32{1, PreferredBlock, MaxRequest},
			[]uint32{be.Uint32(got[infoBlockSize]), be.Uint32(got[infoBlockSize][4:]), be.Uint32(got[infoBlockSize][8:])})
		assert.Equal(t, "a", string(got[infoName]))
		assert.Equal(t, "first disk", string(got[infoDescription]))

		for _, bad := range []struct {
			data []byte
			want uint32
		}{
			{goData("nope"), repErrUnknown},
			{goData(""), repErrUnknown}, // two exports: no default
			{goData("a")[:5], repErrInvalid},
			{append(goData("a", infoName), 0), repErrInvalid},
			{[]byte{0xff, 0xff, 0xff, 0xff, 0, 0}, repErrInvalid},
		} {
			sendOpt(t, c, optGo, bad.data)
			assert.Equal(t, bad.want, readOptReplies(t, c, optGo)[0].typ, "GO %x", bad.data)
		}
		sendOpt(t, c, optSetMetaContext, metaData("a", metaBaseAllocation))
		assert.Equal(t, uint32(repErrInvalid), readOptReplies(t, c, optSetMetaContext)[0].typ, "meta context before structured replies")
		sendOpt(t, c, optStartTLS, nil)
		assert.Equal(t, uint32(repErrPolicy), readOptReplies(t, c, optStartTLS)[0].typ)
		sendOpt(t, c, 99, []byte("xyz"))
		assert.Equal(t, uint32(repErrUnsup), readOptReplies(t, c, 99)[0].typ)

		sendOpt(t, c, optGo, goData("b"))
		rs = readOptReplies(t, c, optGo)
		require.Equal(t, uint32(repAck), rs[len(rs)-1].typ)
		cl := &client{t: t, c: c}
		errno, data := cl.do(cmdRead, 0, 0, 4096, nil)
		require.Zero(t, errno)
		assert.Equal(t, pattern(4096, 8), data)
	})

	t.Run("list meta context", func(t *testing.T) {
		c := dial(t, sock)
		hello(t, c, clientFixedNewstyle)
		sendOpt(t, c, optStructuredReply, nil)
		readOptReplies(t, c, optStructuredReply)
		for _, q := range [][]string{{}, {"base:"}, {"base:allocation"}} {
			sendOpt(t, c, optListMetaContext, metaData("a", q...))
			rs := readOptReplies(t, c, optListMetaContext)
			require.Len(t, rs, 2, "query %q", q)
			assert.Equal(t, uint32(repMetaContext), rs[0].typ)
			assert.Equal(t, metaBaseAllocation, string(rs[0].data[4:]))
		}
		sendOpt(t, c, optListMetaContext, metaData("a", "qemu:dirty-bitmap:x"))
		rs := readOptReplies(t, c, optListMetaContext)
		require.Len(t, rs, 1)
		assert.Equal(t, uint32(repAck), rs[0].typ)
		sendOpt(t, c, optSetMetaContext, metaData("zz", metaBaseAllocation))
		assert.Equal(t, uint32(repErrUnknown), readOptReplies(t, c, optSetMetaContext)[0].typ)
		sendOpt(t, c, optSetMetaContext, metaData("a", metaBaseAllocation)[:9])
		assert.Equal(t, uint32(repErrInvalid), readOptReplies(t, c, optSetMetaContext)[0].typ)
	})

	t.Run("export name", func(t *testing.T) {
		c := dial(t, sock)
		hello(t, c, clientFixedNewstyle) // without NO_ZEROES: 124 zero bytes follow
		sendOpt(t, c, optExportName, []byte("a"))
		var r [134]byte
		_, err := readFull(c, r[:])
		require.NoError(t, err)
		assert.Equal(t, uint64(1<<20+3), be.Uint64(r[0:]))
		assert.Equal(t, make([]byte, 124), r[10:])
	})

	t.Run("export name unknown closes", func(t *testing.T) {
		c := dial(t, sock)
		hello(t, c, clientFixedNewstyle|clientNoZeroes)
		sendOpt(t, c, optExportName, []byte("nope"))
		assert.True(t, closedByServer(c))
	})

	t.Run("unknown client flags close", func(t *testing.T) {
		c := dial(t, sock)
		hello(t, c, 1<<7)
		assert.True(t, closedByServer(c))
	})

	t.Run("huge option is refused", func(t *testing.T) {
		c := dial(t, sock)
		hello(t, c, clientFixedNewstyle)
		b := be.AppendUint64(nil, magicIHaveOpt)
		b = be.AppendUint32(b, optGo)
		b = be.AppendUint32(b, 0xffffffff)
		_, err := c.Write(b)
		require.NoError(t, err)
		assert.Equal(t, uint32(repErrTooBig), readOptReplies(t, c, optGo)[0].typ)
		assert.True(t, closedByServer(c))
	})

	t.Run("bad option magic closes", func(t *testing.T) {
		c := dial(t, sock)
		hello(t, c, clientFixedNewstyle)
		_, err := c.Write(make([]byte, 16))
		require.NoError(t, err)
		assert.True(t, closedByServer(c))
	})
}

func readFull(c interface{ Read([]byte) (int, error) }, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := c.Read(p[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func TestBadRequests(t *testing.T) {
	const size = 1<<20 + 3
	content := pattern(size, 9)
	ro := disk.FromReaderAt(bytes.NewReader(content), size)
	ov, err := disk.NewOverlay(disk.FromReaderAt(bytes.NewReader(content), size))
	require.NoError(t, err)
	defer ov.Close()
	sock := startServer(t, &Server{Exports: map[string]Export{
		"ro": {Image: ro},
		"rw": {Image: ov, Writable: true},
	}})

	for _, structured := range []bool{false, true} {
		t.Run(fmt.Sprintf("structured=%v", structured), func(t *testing.T) {
			cl := connect(t, sock, "ro", clientOpts{structured: structured})
			cases := []struct {
				name    string
				typ     uint16
				flags   uint16
				off     uint64
				length  uint32
				payload []byte
				want    uint32
			}{
				{"read past end", cmdRead, 0, size - 1, 4, nil, errInval},
				{"read at huge offset", cmdRead, 0, 1 << 63, 1, nil, errInval},
				{"read offset+length wraps", cmdRead, 0, ^uint64(0) - 1, 4, nil, errInval},
				{"read larger than the maximum", cmdRead, 0, 0, 0xffffffff, nil, errInval},
				{"write to read-only", cmdWrite, 0, 0, 4, []byte{1, 2, 3, 4}, errPerm},
				{"trim read-only", cmdTrim, 0, 0, 4096, nil, errPerm},
				{"block status without context", cmdBlockStatus, 0, 0, 4096, nil, errInval},
				{"unknown command", 42, 0, 0, 0, nil, errInval},
				{"unknown flag", cmdRead, 1 << 9, 0, 1, nil, errInval},
			}
			for _, c := range cases {
				errno, _ := cl.do(c.typ, c.flags, c.off, c.length, c.payload)
				assert.Equal(t, c.want, errno, c.name)
			}
			// The connection stays in step: the last bytes read fine.
			errno, data := cl.do(cmdRead, 0, size-3, 3, nil)
			require.Zero(t, errno)
			assert.Equal(t, content[size-3:], data)
			cl.send(cmdDisc, 0, 0, 0, nil)
			assert.True(t, closedByServer(cl.c))
		})
	}

	t.Run("writable", func(t *testing.T) {
		cl := connect(t, sock, "rw", clientOpts{structured: true, meta: []string{metaBaseAllocation}})
		assert.Zero(t, cl.flags&tflagReadOnly)
		assert.NotZero(t, cl.flags&tflagSendTrim)
		assert.NotZero(t, cl.flags&tflagSendWriteZeroes)

		errno, _ := cl.do(cmdWrite, 0, size-2, 4, []byte{1, 2, 3, 4})
		assert.Equal(t, uint32(errNoSpc), errno, "write past end")
		errno, _ = cl.do(cmdWrite, 0, 0, MaxRequest+1, make([]byte, MaxRequest+1))
		assert.Equal(t, uint32(errInval), errno, "write larger than the maximum")
		// The overlay zeroes by punching holes, so a fast zero is offered.
		errno, _ = cl.do(cmdWriteZeroes, cmdFlagFastZero, size-4096, 4096, nil)
		assert.Zero(t, errno, "fast zero through the overlay's ZeroAt")
		errno, data := cl.do(cmdRead, 0, size-4097, 4097, nil)
		require.Zero(t, errno)
		assert.Equal(t, content[size-4097], data[0])
		assert.Equal(t, make([]byte, 4096), data[1:], "fast-zeroed range reads as zeros")
		errno, _ = cl.do(cmdWriteZeroes, 0, size-1, 2, nil)
		assert.Equal(t, uint32(errNoSpc), errno, "write zeroes past end")
		errno, _ = cl.do(cmdWriteZeroes, 0, 4096, 3<<20, nil)
		assert.Equal(t, uint32(errNoSpc), errno, "write zeroes longer than the export")
		errno, _ = cl.do(cmdWriteZeroes, 0, 1000, 5000, nil)
		require.Zero(t, errno)
		errno, data = cl.do(cmdRead, 0, 998, 5004, nil)
		require.Zero(t, errno)
		assert.Equal(t, content[998:1000], data[:2])
		assert.Equal(t, make([]byte, 5000), data[2:5002])
		assert.Equal(t, content[6000:6002], data[5002:])

		errno, _ = cl.do(cmdWrite, cmdFlagFUA, 100, 5, []byte("hello"))
		require.Zero(t, errno)
		errno, data = cl.do(cmdRead, 0, 98, 9, nil)
		require.Zero(t, errno)
		assert.Equal(t, append(append(content[98:100:100], "hello"...), content[105:107]...), data)
		assert.Equal(t, pattern(size, 9), content, "the base content changed")

		errno, _ = cl.do(cmdFlush, 0, 0, 0, nil)
		assert.Zero(t, errno)
		errno, _ = cl.do(cmdTrim, 0, 0, 4096, nil)
		assert.Zero(t, errno)

		errno, bs := cl.do(cmdBlockStatus, cmdFlagReqOne, 0, size, nil)
		require.Zero(t, errno)
		require.Len(t, bs, 12, "REQ_ONE: one descriptor")
		assert.Equal(t, uint32(metaBaseAllocationID), be.Uint32(bs))
		assert.Equal(t, uint32(size), be.Uint32(bs[4:]))
		assert.Equal(t, uint32(0), be.Uint32(bs[8:]))
		errno, _ = cl.do(cmdBlockStatus, 0, size, 1, nil)
		assert.Equal(t, uint32(errInval), errno, "block status past end")

		// A header with a bad magic ends the connection.
		_, err := cl.c.Write(make([]byte, requestHeaderSize))
		require.NoError(t, err)
		assert.True(t, closedByServer(cl.c))
	})
}

// TestBlockStatusHoles checks the descriptors for a sparse raw image.
func TestBlockStatusHoles(t *testing.T) {
	_, img := sparseRaw(t, testSize, testRegions())
	sock := startServer(t, &Server{Exports: map[string]Export{"vm": {Image: img}}})
	cl := connect(t, sock, "vm", clientOpts{structured: true, meta: []string{"qemu:x", metaBaseAllocation}})
	for _, c := range []struct {
		off   uint64
		n     uint32
		state uint32
	}{
		{0, 4096, 0},
		{2 << 20, 1 << 20, stateHole | stateZero},
		{20<<20 + 4096, 4096, 0},
		{30 << 20, 4096, stateHole | stateZero},
	} {
		errno, bs := cl.do(cmdBlockStatus, 0, c.off, c.n, nil)
		require.Zero(t, errno)
		require.GreaterOrEqual(t, len(bs), 12)
		var total uint32
		for i := 4; i < len(bs); i += 8 {
			total += be.Uint32(bs[i:])
		}
		assert.LessOrEqual(t, total, c.n)
		assert.Equal(t, c.state, be.Uint32(bs[8:]), "state at %#x", c.off)
	}
}

// TestReadHoles: structured reads of ranges without data come back as hole
// chunks, reads touching data as data; both read as the image does.
func TestReadHoles(t *testing.T) {
	path, img := sparseRaw(t, testSize, testRegions())
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	sock := startServer(t, &Server{Exports: map[string]Export{"vm": {Image: img}}})
	cl := connect(t, sock, "vm", clientOpts{structured: true})
	for _, c := range []struct {
		off   uint64
		n     uint32
		holes int
		flags uint16
	}{
		{2 << 20, 1 << 20, 1, 0},          // inside a hole
		{2 << 20, 1 << 20, 0, cmdFlagDF},  // DF: one data chunk
		{2 << 20, 4096, 0, 0},             // small: data
		{1 << 20, 1 << 20, 0, 0},          // data then hole
		{20 << 20, 1 << 20, 0, 0},         // hole then data
		{testSize - 65536, 65536, 0, 0},   // data at the end
		{testSize - 4<<20, 1 << 20, 1, 0}, // hole near the end
	} {
		before := cl.holes
		errno, data := cl.do(cmdRead, c.flags, c.off, c.n, nil)
		require.Zero(t, errno)
		assert.Equal(t, c.holes, cl.holes-before, "hole chunks for %#x+%#x", c.off, c.n)
		assert.True(t, bytes.Equal(want[c.off:c.off+uint64(c.n)], data), "data at %#x+%#x", c.off, c.n)
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	img := disk.FromReaderAt(bytes.NewReader(make([]byte, 4096)), 4096)
	sock := filepath.Join(t.TempDir(), "s")
	l, err := Listen("unix:" + sock)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Exports: map[string]Export{"": {Image: img}}}).Serve(ctx, l) }()
	// An idle client in the middle of its handshake must not keep Serve alive.
	c := dial(t, sock)
	hello(t, c, clientFixedNewstyle)
	cl := connect(t, sock, "", clientOpts{})
	cancel()
	require.NoError(t, <-done)
	assert.True(t, closedByServer(c))
	assert.True(t, closedByServer(cl.c))
	// The socket path can be reused (a stale socket file is replaced).
	l2, err := Listen("unix:" + sock)
	require.NoError(t, err)
	l2.Close()
}

func TestListenAddresses(t *testing.T) {
	l, err := Listen("127.0.0.1:0")
	require.NoError(t, err)
	l.Close()
	for _, bad := range []string{"unix:", "nonsense", "unix:/nonexistent-dir/x.sock"} {
		_, err := Listen(bad)
		assert.Error(t, err, bad)
	}
	l, err = Listen("127.0.0.1:0")
	require.NoError(t, err)
	err = (&Server{Exports: map[string]Export{"x": {Image: disk.FromReaderAt(bytes.NewReader(nil), 0), Writable: true}}}).Serve(context.Background(), l)
	assert.ErrorContains(t, err, "no WriteAt")
}

// TestPipelinedRequests sends many requests before reading any reply: every
// reply arrives whole, once, with its own cookie and data.
func TestPipelinedRequests(t *testing.T) {
	const size = 8 << 20
	content := pattern(size, 11)
	img := disk.FromReaderAt(bytes.NewReader(content), size)
	sock := startServer(t, &Server{Exports: map[string]Export{"vm": {Image: img}}, Workers: 4})
	cl := connect(t, sock, "vm", clientOpts{})
	const n = 64
	want := map[uint64][]byte{}
	// 64 headers fit in the socket buffer: all are sent before any reply is read.
	for i := range n {
		off := uint64(i) * 100_003 % (size - 65536)
		length := uint32(512 + i*997)
		cl.send(cmdRead, 0, off, length, nil)
		want[cl.cookie] = content[off : off+uint64(length)]
	}
	for range n {
		var h [16]byte
		_, err := readFull(cl.c, h[:])
		require.NoError(t, err)
		require.Equal(t, uint32(magicSimpleReply), be.Uint32(h[0:]))
		require.Zero(t, be.Uint32(h[4:]))
		cookie := be.Uint64(h[8:])
		w, ok := want[cookie]
		require.True(t, ok, "unexpected or repeated cookie %d", cookie)
		delete(want, cookie)
		got := make([]byte, len(w))
		_, err = readFull(cl.c, got)
		require.NoError(t, err)
		require.True(t, bytes.Equal(w, got), "data of request %d", cookie)
	}
	assert.Empty(t, want)
}
