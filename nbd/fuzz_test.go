package nbd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/internal/testutil"
)

// The fuzz targets feed a whole client byte stream to a server over net.Pipe,
// draining its replies: the server must neither panic nor hang. Their seed
// corpus under testdata/fuzz holds streams recorded from qemu-img and qemu-io
// (TestRecordClientStreams).

func fuzzServe(t *testing.T, s *Server, input []byte) {
	srv, cli := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(context.Background(), srv) }()
	drained := make(chan struct{})
	go func() {
		io.Copy(io.Discard, cli)
		close(drained)
	}()
	cli.SetWriteDeadline(time.Now().Add(5 * time.Second))
	cli.Write(input) // fails early when the server hangs up: fine
	cli.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("server still running 10 s after the client closed")
	}
	<-drained
}

func fuzzImage(t testing.TB) disk.Image {
	dir := t.TempDir()
	path := filepath.Join(dir, "fuzz.raw")
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(4<<20))
	_, err = f.WriteAt(pattern(64<<10, 1), 1<<20)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	img, err := disk.OpenRaw(path)
	require.NoError(t, err)
	t.Cleanup(func() { img.Close() })
	return img
}

func seedStreams(f *testing.F) {
	c := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	opt := func(o uint32, data []byte) []byte {
		b := be.AppendUint64(nil, magicIHaveOpt)
		b = be.AppendUint32(b, o)
		b = be.AppendUint32(b, uint32(len(data)))
		return append(b, data...)
	}
	req := func(typ, flags uint16, off uint64, n uint32, payload []byte) []byte {
		b := be.AppendUint32(nil, magicRequest)
		b = be.AppendUint16(b, flags)
		b = be.AppendUint16(b, typ)
		b = be.AppendUint64(b, 7)
		b = be.AppendUint64(b, off)
		b = be.AppendUint32(b, n)
		return append(b, payload...)
	}
	flags := be.AppendUint32(nil, clientFixedNewstyle|clientNoZeroes)
	f.Add(c(flags, opt(optList, nil), opt(optAbort, nil)))
	f.Add(c(flags, opt(optInfo, goData("vm", infoName, infoBlockSize)), opt(optExportName, []byte("vm")), req(cmdRead, 0, 0, 512, nil)))
	f.Add(c(flags, opt(optStructuredReply, nil), opt(optListMetaContext, metaData("vm")),
		opt(optSetMetaContext, metaData("vm", metaBaseAllocation)), opt(optGo, goData("vm")),
		req(cmdBlockStatus, 0, 0, 4<<20, nil), req(cmdRead, cmdFlagDF, 1<<20, 4096, nil),
		req(cmdWrite, cmdFlagFUA, 4096, 4, []byte("abcd")), req(cmdTrim, 0, 0, 8192, nil),
		req(cmdFlush, 0, 0, 0, nil), req(cmdDisc, 0, 0, 0, nil)))
}

func FuzzHandshake(f *testing.F) {
	seedStreams(f)
	img := fuzzImage(f)
	s := &Server{
		Exports:          map[string]Export{"vm": {Image: img, Description: "fuzz"}, "other": {Image: img}},
		HandshakeTimeout: 2 * time.Second,
	}
	f.Fuzz(func(t *testing.T, input []byte) { fuzzServe(t, s, input) })
}

func FuzzRequests(f *testing.F) {
	seedStreams(f)
	ov, err := disk.NewOverlay(fuzzImage(f))
	require.NoError(f, err)
	f.Cleanup(func() { ov.Close() })
	s := &Server{
		Exports:          map[string]Export{"vm": {Image: ov, Writable: true}},
		HandshakeTimeout: 2 * time.Second,
	}
	f.Fuzz(func(t *testing.T, input []byte) { fuzzServe(t, s, input) })
}

// recordingListener keeps a copy of every byte its clients send.
type recordingListener struct {
	net.Listener
	mu      sync.Mutex
	streams []*bytes.Buffer
}

type recordingConn struct {
	net.Conn
	l   *recordingListener
	buf *bytes.Buffer
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	b := new(bytes.Buffer)
	l.mu.Lock()
	l.streams = append(l.streams, b)
	l.mu.Unlock()
	return &recordingConn{Conn: c, l: l, buf: b}, nil
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.l.mu.Lock()
	c.buf.Write(p[:n])
	c.l.mu.Unlock()
	return n, err
}

// TestRecordClientStreams regenerates the seed corpus from real clients when
// VMCONV_NBD_RECORD is set.
func TestRecordClientStreams(t *testing.T) {
	if os.Getenv("VMCONV_NBD_RECORD") == "" {
		t.Skip("set VMCONV_NBD_RECORD=1 to record qemu client streams into testdata/fuzz")
	}
	qemuImg := testutil.RequireTool(t, "qemu-img")
	qemuIO := testutil.RequireTool(t, "qemu-io")
	ov, err := disk.NewOverlay(fuzzImage(t))
	require.NoError(t, err)
	defer ov.Close()
	runs := []struct {
		name string
		cmd  []string
	}{
		{"qemu-img-info", []string{qemuImg, "info", "URI"}},
		{"qemu-img-map", []string{qemuImg, "map", "--output=json", "-f", "raw", "URI"}},
		{"qemu-io-rw", []string{qemuIO, "-f", "raw", "-c", "write -P 0x5a 512 1k", "-c", "aio_write -P 1 8k 512",
			"-c", "aio_write -P 2 1M 512", "-c", "aio_flush", "-c", "discard 0 64k", "-c", "read 0 4k", "URI"}},
	}
	for _, r := range runs {
		sock := filepath.Join(t.TempDir(), "s")
		l, err := Listen("unix:" + sock)
		require.NoError(t, err)
		rl := &recordingListener{Listener: l}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- (&Server{Exports: map[string]Export{"vm": {Image: ov, Writable: true}}}).Serve(ctx, rl)
		}()
		args := append([]string(nil), r.cmd[1:]...)
		args[len(args)-1] = nbdURI(sock, "vm")
		testutil.Run(t, r.cmd[0], args...)
		cancel()
		require.NoError(t, <-done)
		for i, s := range rl.streams {
			for _, target := range []string{"FuzzHandshake", "FuzzRequests"} {
				dir := filepath.Join("testdata", "fuzz", target)
				require.NoError(t, os.MkdirAll(dir, 0o755))
				body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s.Bytes())
				require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d", r.name, i)), []byte(body), 0o644))
			}
		}
	}
}
