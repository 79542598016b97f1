// Package nbd serves disk images over the Network Block Device protocol
// (fixed newstyle handshake, structured replies, the base:allocation metadata
// context), so that QEMU, qemu-img or nbd-client read any image vmconv can
// open — VMDK, XVA, a bundle — without ever opening its files themselves.
package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmconv/vmconv/disk"
)

// Export is one named disk of a Server.
type Export struct {
	// Image is the disk served.
	Image disk.Image
	// Writable serves WRITE, TRIM and WRITE_ZEROES; Image must then
	// implement io.WriterAt. Serve a copy-on-write overlay (disk.NewOverlay)
	// so the image underneath never changes.
	Writable bool
	// Description is what NBD_OPT_LIST and NBD_INFO_DESCRIPTION show.
	Description string
}

// Zeroer is implemented by writable images that can zero a range without
// being written zeros; NBD_CMD_WRITE_ZEROES with NBD_CMD_FLAG_FAST_ZERO
// succeeds only for them.
type Zeroer interface {
	ZeroAt(off, n int64) error
}

// Trimmer is implemented by writable images that can drop a range.
// NBD_CMD_TRIM is advisory: without it, a TRIM succeeds and changes nothing.
type Trimmer interface {
	TrimAt(off, n int64) error
}

// Flusher is implemented by images with something to make durable on
// NBD_CMD_FLUSH.
type Flusher interface {
	Flush() error
}

// Server serves its exports to every client that connects.
type Server struct {
	// Exports by name. The empty name, which clients use for "the default
	// export", selects the only export when there is exactly one.
	Exports map[string]Export
	// Logf, when set, receives one line per connection that ended in error.
	Logf func(format string, args ...any)
	// HandshakeTimeout bounds option haggling; zero means 30 seconds.
	HandshakeTimeout time.Duration
	// Workers is the number of requests served at once per connection; zero
	// means 4. Replies are serialized on the connection.
	Workers int

	once    sync.Once
	exports map[string]*export
	initErr error
}

// export is an Export with the lock that keeps writes to it from running
// beside reads of the same image.
type export struct {
	Export
	name string
	w    io.WriterAt
	mu   sync.RWMutex
}

func (s *Server) init() error {
	s.once.Do(func() {
		s.exports = make(map[string]*export, len(s.Exports))
		for name, e := range s.Exports {
			if e.Image == nil {
				s.initErr = fmt.Errorf("nbd: export %q has no image", name)
				return
			}
			if len(name) > maxString {
				s.initErr = fmt.Errorf("nbd: export name %.20q… is longer than %d bytes", name, maxString)
				return
			}
			x := &export{Export: e, name: name}
			if e.Writable {
				w, ok := e.Image.(io.WriterAt)
				if !ok {
					s.initErr = fmt.Errorf("nbd: export %q is writable but its image (%T) has no WriteAt", name, e.Image)
					return
				}
				x.w = w
			}
			s.exports[name] = x
		}
	})
	return s.initErr
}

func (s *Server) lookup(name string) *export {
	if x, ok := s.exports[name]; ok {
		return x
	}
	if name == "" && len(s.exports) == 1 {
		for _, x := range s.exports {
			return x
		}
	}
	return nil
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// Listen opens a listener for addr: "unix:PATH" for a Unix socket (a stale
// socket file left by a dead server is replaced), anything else as TCP
// "HOST:PORT".
func Listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return nil, fmt.Errorf("nbd: listen %q: empty socket path", addr)
		}
		l, err := net.Listen("unix", path)
		if err != nil && isStaleSocket(path) {
			if rerr := removeSocket(path); rerr == nil {
				l, err = net.Listen("unix", path)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("nbd: listen %s: %w", addr, err)
		}
		return l, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("nbd: listen %q: want unix:PATH or HOST:PORT: %w", addr, err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("nbd: listen %s: %w", addr, err)
	}
	return l, nil
}

// Serve accepts connections on l until ctx is done, then closes l and every
// connection and returns nil once all of them have ended. It returns an error
// if an export is unusable or accepting fails.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if err := s.init(); err != nil {
		l.Close()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	stop := context.AfterFunc(ctx, func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()

	var acceptErr error
	for {
		nc, err := l.Accept()
		if err != nil {
			if ctx.Err() == nil {
				acceptErr = fmt.Errorf("nbd: accept: %w", err)
			}
			break
		}
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			nc.Close()
			break
		}
		conns[nc] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.ServeConn(ctx, nc); err != nil {
				s.logf("nbd: %s: %v", nc.RemoteAddr(), err)
			}
			mu.Lock()
			delete(conns, nc)
			mu.Unlock()
		}()
	}
	cancel()
	wg.Wait()
	return acceptErr
}

// ServeConn runs one client connection to its end and closes it. A client
// that disconnects cleanly (NBD_OPT_ABORT, NBD_CMD_DISC, or closing the
// connection between requests) is not an error.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) error {
	defer nc.Close()
	if err := s.init(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()

	c := &conn{
		srv: s,
		nc:  nc,
		br:  bufio.NewReaderSize(nc, 64<<10),
		bw:  bufio.NewWriterSize(nc, 64<<10),
	}
	timeout := s.HandshakeTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	nc.SetDeadline(time.Now().Add(timeout))
	x, err := c.handshake()
	if err != nil || x == nil {
		return quiet(err)
	}
	nc.SetDeadline(time.Time{})
	return quiet(c.transmit(x))
}

// quiet drops the errors of a client that simply went away.
func quiet(err error) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	return err
}

// conn is one client connection.
type conn struct {
	srv *Server
	nc  net.Conn
	br  *bufio.Reader

	wmu sync.Mutex // serializes replies
	bw  *bufio.Writer

	noZeroes   bool
	structured bool
	metaAlloc  bool // base:allocation selected
}

var be = binary.BigEndian

// ---- handshake ----

// handshake runs the fixed newstyle negotiation. It returns the export chosen
// by NBD_OPT_GO or NBD_OPT_EXPORT_NAME, or nil when the client aborted.
func (c *conn) handshake() (*export, error) {
	var hello [18]byte
	be.PutUint64(hello[0:], magicNBD)
	be.PutUint64(hello[8:], magicIHaveOpt)
	be.PutUint16(hello[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := c.bw.Write(hello[:]); err != nil {
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	var cf [4]byte
	if _, err := io.ReadFull(c.br, cf[:]); err != nil {
		return nil, fmt.Errorf("handshake: client flags: %w", err)
	}
	flags := be.Uint32(cf[:])
	if flags&^(clientFixedNewstyle|clientNoZeroes) != 0 {
		return nil, fmt.Errorf("handshake: unknown client flags %#x", flags)
	}
	c.noZeroes = flags&clientNoZeroes != 0

	for {
		var h [16]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return nil, fmt.Errorf("handshake: option header: %w", err)
		}
		if m := be.Uint64(h[0:]); m != magicIHaveOpt {
			return nil, fmt.Errorf("handshake: option magic %#x, want %#x", m, uint64(magicIHaveOpt))
		}
		opt, n := be.Uint32(h[8:]), be.Uint32(h[12:])
		if n > maxOption {
			// Answer, then drop the client rather than read a payload of
			// up to 4 GiB.
			c.optReply(opt, repErrTooBig, []byte("option data too long"))
			return nil, fmt.Errorf("handshake: option %d has %d bytes of data (limit %d)", opt, n, maxOption)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(c.br, data); err != nil {
			return nil, fmt.Errorf("handshake: option %d data: %w", opt, err)
		}
		x, done, err := c.option(opt, data)
		if err != nil || done {
			return x, err
		}
	}
}

// option answers one option; done ends the negotiation.
func (c *conn) option(opt uint32, data []byte) (x *export, done bool, err error) {
	switch opt {
	case optExportName:
		x := c.srv.lookup(string(data))
		if x == nil {
			// The protocol has no error reply here: drop the client.
			return nil, true, fmt.Errorf("handshake: NBD_OPT_EXPORT_NAME: no export %q", data)
		}
		var b [10 + handshakeZeroPad]byte
		be.PutUint64(b[0:], uint64(x.Image.Size()))
		be.PutUint16(b[8:], c.transmissionFlags(x))
		n := len(b)
		if c.noZeroes {
			n = 10
		}
		if _, err := c.bw.Write(b[:n]); err != nil {
			return nil, true, err
		}
		return x, true, c.bw.Flush()

	case optAbort:
		c.optReply(opt, repAck, nil)
		return nil, true, nil

	case optList:
		if len(data) != 0 {
			return nil, false, c.optReply(opt, repErrInvalid, []byte("NBD_OPT_LIST takes no data"))
		}
		names := make([]string, 0, len(c.srv.exports))
		for name := range c.srv.exports {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			d := c.srv.exports[name].Description
			b := make([]byte, 4+len(name)+len(d))
			be.PutUint32(b, uint32(len(name)))
			copy(b[4:], name)
			copy(b[4+len(name):], d)
			if err := c.optReply(opt, repServer, b); err != nil {
				return nil, false, err
			}
		}
		return nil, false, c.optReply(opt, repAck, nil)

	case optInfo, optGo:
		return c.optInfoGo(opt, data)

	case optStructuredReply:
		if len(data) != 0 {
			return nil, false, c.optReply(opt, repErrInvalid, []byte("NBD_OPT_STRUCTURED_REPLY takes no data"))
		}
		c.structured = true
		return nil, false, c.optReply(opt, repAck, nil)

	case optListMetaContext, optSetMetaContext:
		return nil, false, c.optMetaContext(opt, data)

	case optStartTLS:
		return nil, false, c.optReply(opt, repErrPolicy, []byte("TLS is not offered"))
	}
	return nil, false, c.optReply(opt, repErrUnsup, fmt.Appendf(nil, "option %d is not supported", opt))
}

func (c *conn) optInfoGo(opt uint32, data []byte) (*export, bool, error) {
	invalid := func(msg string) (*export, bool, error) {
		return nil, false, c.optReply(opt, repErrInvalid, []byte(msg))
	}
	if len(data) < 6 {
		return invalid("option data shorter than 6 bytes")
	}
	nameLen := be.Uint32(data)
	if nameLen > maxString || uint64(nameLen)+6 > uint64(len(data)) {
		return invalid("export name length past the option data")
	}
	name := string(data[4 : 4+nameLen])
	rest := data[4+nameLen:]
	nreq := int(be.Uint16(rest))
	if len(rest) != 2+2*nreq {
		return invalid(fmt.Sprintf("%d information requests do not fill %d bytes", nreq, len(rest)-2))
	}
	x := c.srv.lookup(name)
	if x == nil {
		return nil, false, c.optReply(opt, repErrUnknown, fmt.Appendf(nil, "no export %q", name))
	}
	var wantName, wantDesc bool
	for i := range nreq {
		switch be.Uint16(rest[2+2*i:]) {
		case infoName:
			wantName = true
		case infoDescription:
			wantDesc = true
		}
	}
	var b [18]byte
	be.PutUint16(b[0:], infoExport)
	be.PutUint64(b[2:], uint64(x.Image.Size()))
	be.PutUint16(b[10:], c.transmissionFlags(x))
	if err := c.optReply(opt, repInfo, b[:12]); err != nil {
		return nil, false, err
	}
	be.PutUint16(b[0:], infoBlockSize)
	be.PutUint32(b[2:], 1)
	be.PutUint32(b[6:], PreferredBlock)
	be.PutUint32(b[10:], MaxRequest)
	if err := c.optReply(opt, repInfo, b[:14]); err != nil {
		return nil, false, err
	}
	if wantName {
		if err := c.optReply(opt, repInfo, append([]byte{0, infoName}, x.name...)); err != nil {
			return nil, false, err
		}
	}
	if wantDesc && x.Description != "" {
		if err := c.optReply(opt, repInfo, append([]byte{0, infoDescription}, x.Description...)); err != nil {
			return nil, false, err
		}
	}
	if err := c.optReply(opt, repAck, nil); err != nil {
		return nil, false, err
	}
	if opt == optGo {
		return x, true, nil
	}
	return nil, false, nil
}

// optMetaContext answers NBD_OPT_LIST_META_CONTEXT and _SET_META_CONTEXT:
// u32 name length, name, u32 query count, then each query as u32 length and
// string.
func (c *conn) optMetaContext(opt uint32, data []byte) error {
	invalid := func(msg string) error { return c.optReply(opt, repErrInvalid, []byte(msg)) }
	if !c.structured {
		return invalid("structured replies were not negotiated")
	}
	str := func() (string, bool) {
		if len(data) < 4 {
			return "", false
		}
		n := be.Uint32(data)
		if n > maxString || uint64(n) > uint64(len(data)-4) {
			return "", false
		}
		s := string(data[4 : 4+n])
		data = data[4+n:]
		return s, true
	}
	name, ok := str()
	if !ok || len(data) < 4 {
		return invalid("malformed export name")
	}
	nq := be.Uint32(data)
	data = data[4:]
	if uint64(nq)*4 > uint64(len(data)) {
		return invalid("query count past the option data")
	}
	queries := make([]string, 0, nq)
	for range nq {
		q, ok := str()
		if !ok {
			return invalid("malformed query")
		}
		queries = append(queries, q)
	}
	if len(data) != 0 {
		return invalid("trailing bytes after the queries")
	}
	if c.srv.lookup(name) == nil {
		return c.optReply(opt, repErrUnknown, fmt.Appendf(nil, "no export %q", name))
	}

	match := false
	for _, q := range queries {
		if q == metaBaseAllocation || (opt == optListMetaContext && q == "base:") {
			match = true
		}
	}
	if opt == optListMetaContext && len(queries) == 0 {
		match = true
	}
	if opt == optSetMetaContext {
		c.metaAlloc = match
	}
	if match {
		id := uint32(0) // reserved in LIST replies
		if opt == optSetMetaContext {
			id = metaBaseAllocationID
		}
		b := be.AppendUint32(nil, id)
		if err := c.optReply(opt, repMetaContext, append(b, metaBaseAllocation...)); err != nil {
			return err
		}
	}
	return c.optReply(opt, repAck, nil)
}

func (c *conn) optReply(opt, typ uint32, data []byte) error {
	var h [20]byte
	be.PutUint64(h[0:], magicOptReply)
	be.PutUint32(h[8:], opt)
	be.PutUint32(h[12:], typ)
	be.PutUint32(h[16:], uint32(len(data)))
	c.bw.Write(h[:])
	c.bw.Write(data)
	return c.bw.Flush()
}

func (c *conn) transmissionFlags(x *export) uint16 {
	f := uint16(tflagHasFlags | tflagSendFlush | tflagCanMultiConn)
	if c.structured {
		f |= tflagSendDF // every read is answered in one chunk
	}
	if x.w == nil {
		f |= tflagReadOnly
	} else {
		f |= tflagSendTrim | tflagSendFUA | tflagSendWriteZeroes
	}
	return f
}
