package nbd

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
)

// startServer serves exports on a Unix socket in a temporary directory and
// returns its path; the server is stopped, and must have stopped, at cleanup.
func startServer(t *testing.T, s *Server) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	l, err := Listen("unix:" + sock)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("server did not stop within 10 s of its context ending")
		}
	})
	return sock
}

// sparseRaw writes a raw image of size bytes with the given data regions (the
// rest left as holes) and opens it with disk.OpenRaw.
func sparseRaw(t *testing.T, size int64, regions map[int64][]byte) (string, *disk.Raw) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(size))
	for off, p := range regions {
		_, err := f.WriteAt(p, off)
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())
	img, err := disk.OpenRaw(path)
	require.NoError(t, err)
	t.Cleanup(func() { img.Close() })
	return path, img
}

func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	x := uint32(seed) + 1
	for i := range p {
		x = x*1664525 + 1013904223
		p[i] = byte(x >> 24)
	}
	return p
}

// client is a minimal NBD client for the tests: one request at a time.
type client struct {
	t          *testing.T
	c          net.Conn
	size       uint64
	flags      uint16
	structured bool
	cookie     uint64
	holes      int // OFFSET_HOLE chunks received
}

type clientOpts struct {
	structured bool
	meta       []string // SET_META_CONTEXT queries
}

func dial(t *testing.T, sock string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// hello reads the server greeting and answers with client flags.
func hello(t *testing.T, c net.Conn, cflags uint32) {
	t.Helper()
	var g [18]byte
	_, err := io.ReadFull(c, g[:])
	require.NoError(t, err)
	require.Equal(t, uint64(magicNBD), be.Uint64(g[0:]))
	require.Equal(t, uint64(magicIHaveOpt), be.Uint64(g[8:]))
	require.Equal(t, uint16(flagFixedNewstyle|flagNoZeroes), be.Uint16(g[16:]))
	require.NoError(t, binary.Write(c, be, cflags))
}

func sendOpt(t *testing.T, c net.Conn, opt uint32, data []byte) {
	t.Helper()
	b := be.AppendUint64(nil, magicIHaveOpt)
	b = be.AppendUint32(b, opt)
	b = be.AppendUint32(b, uint32(len(data)))
	_, err := c.Write(append(b, data...))
	require.NoError(t, err)
}

type optReply struct {
	typ  uint32
	data []byte
}

// readOptReplies reads replies to opt up to and including the first that is
// neither INFO, SERVER nor META_CONTEXT.
func readOptReplies(t *testing.T, c net.Conn, opt uint32) []optReply {
	t.Helper()
	var out []optReply
	for {
		var h [20]byte
		_, err := io.ReadFull(c, h[:])
		require.NoError(t, err)
		require.Equal(t, uint64(magicOptReply), be.Uint64(h[0:]))
		require.Equal(t, opt, be.Uint32(h[8:]))
		r := optReply{typ: be.Uint32(h[12:]), data: make([]byte, be.Uint32(h[16:]))}
		_, err = io.ReadFull(c, r.data)
		require.NoError(t, err)
		out = append(out, r)
		if r.typ != repInfo && r.typ != repServer && r.typ != repMetaContext {
			return out
		}
	}
}

func metaData(name string, queries ...string) []byte {
	b := be.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = be.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = be.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

func goData(name string, infos ...uint16) []byte {
	b := be.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = be.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = be.AppendUint16(b, i)
	}
	return b
}

// connect negotiates with NBD_OPT_GO and returns a client in transmission.
func connect(t *testing.T, sock, name string, o clientOpts) *client {
	t.Helper()
	c := dial(t, sock)
	hello(t, c, clientFixedNewstyle|clientNoZeroes)
	cl := &client{t: t, c: c}
	if o.structured {
		sendOpt(t, c, optStructuredReply, nil)
		r := readOptReplies(t, c, optStructuredReply)
		require.Equal(t, uint32(repAck), r[len(r)-1].typ)
		cl.structured = true
	}
	if o.meta != nil {
		sendOpt(t, c, optSetMetaContext, metaData(name, o.meta...))
		r := readOptReplies(t, c, optSetMetaContext)
		require.Equal(t, uint32(repAck), r[len(r)-1].typ)
	}
	sendOpt(t, c, optGo, goData(name))
	rs := readOptReplies(t, c, optGo)
	require.Equal(t, uint32(repAck), rs[len(rs)-1].typ, "NBD_OPT_GO %q: %q", name, rs[len(rs)-1].data)
	for _, r := range rs {
		if r.typ == repInfo && be.Uint16(r.data) == infoExport {
			cl.size = be.Uint64(r.data[2:])
			cl.flags = be.Uint16(r.data[10:])
		}
	}
	return cl
}

func (cl *client) send(typ, flags uint16, off uint64, length uint32, payload []byte) {
	cl.cookie++
	b := be.AppendUint32(nil, magicRequest)
	b = be.AppendUint16(b, flags)
	b = be.AppendUint16(b, typ)
	b = be.AppendUint64(b, cl.cookie)
	b = be.AppendUint64(b, off)
	b = be.AppendUint32(b, length)
	_, err := cl.c.Write(append(b, payload...))
	require.NoError(cl.t, err)
}

// do sends one request and returns the error number and the data of the reply
// (read data, or the raw BLOCK_STATUS payload).
func (cl *client) do(typ, flags uint16, off uint64, length uint32, payload []byte) (uint32, []byte) {
	t := cl.t
	cl.send(typ, flags, off, length, payload)
	var data []byte
	for {
		var m [4]byte
		_, err := io.ReadFull(cl.c, m[:])
		require.NoError(t, err)
		switch be.Uint32(m[:]) {
		case magicSimpleReply:
			var h [12]byte
			_, err := io.ReadFull(cl.c, h[:])
			require.NoError(t, err)
			require.Equal(t, cl.cookie, be.Uint64(h[4:]))
			errno := be.Uint32(h[0:])
			if errno == 0 && typ == cmdRead {
				data = make([]byte, length)
				_, err := io.ReadFull(cl.c, data)
				require.NoError(t, err)
			}
			return errno, data
		case magicStructReply:
			require.True(t, cl.structured, "structured reply without negotiation")
			var h [16]byte
			_, err := io.ReadFull(cl.c, h[:])
			require.NoError(t, err)
			flags, ctyp := be.Uint16(h[0:]), be.Uint16(h[2:])
			require.Equal(t, cl.cookie, be.Uint64(h[4:]))
			p := make([]byte, be.Uint32(h[12:]))
			_, err = io.ReadFull(cl.c, p)
			require.NoError(t, err)
			var errno uint32
			switch ctyp {
			case replyTypeOffsetData:
				require.Equal(t, off+uint64(len(data)), be.Uint64(p))
				data = append(data, p[8:]...)
			case replyTypeOffsetHole:
				require.Len(t, p, 12)
				require.Equal(t, off+uint64(len(data)), be.Uint64(p))
				cl.holes++
				data = append(data, make([]byte, be.Uint32(p[8:]))...)
			case replyTypeBlockStatus:
				data = p
			case replyTypeError:
				errno = be.Uint32(p)
				require.Equal(t, int(be.Uint16(p[4:])), len(p)-6)
			case replyTypeNone:
			default:
				t.Fatalf("unexpected structured chunk type %d", ctyp)
			}
			if flags&replyFlagDone != 0 || errno != 0 {
				return errno, data
			}
		default:
			t.Fatalf("reply magic %#x", be.Uint32(m[:]))
		}
	}
}

// closedByServer reports whether the server closed the connection (reading
// returns EOF or a reset) within a few seconds.
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}
