package ovf

import (
	"archive/tar"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"strings"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/neutral"
)

// maxSpooledMembers bounds the members kept before the descriptor of an
// OVA whose descriptor is not first.
const maxSpooledMembers = 64

// StreamReader reads an OVA in one pass (from a pipe): the descriptor,
// then each disk in archive order. Every member is hashed as it passes and
// checked against the manifest, wherever in the archive the manifest is.
// Disks are not copied anywhere, unless members come before the descriptor
// (which OVF forbids but some tools do): those are spooled to unlinked
// temporary files until the descriptor says what they are.
type StreamReader struct {
	name     string
	tr       *tar.Reader
	opt      Disks
	mp       *Mapped
	mf       *Manifest
	sums     map[string][]byte // member → digest, for checks once the manifest is known
	algo     map[string]string
	spooled  []spooled
	seen     map[string]bool
	handed   map[int]bool // drive index → handed out
	cur      *hashingReader
	curName  string
	blanks   []int // blank disks still to hand out
	err      error
	finished bool
}

type spooled struct {
	name string
	f    *os.File
}

// hashingReader hashes what passes through it with SHA-1, SHA-256 and
// SHA-512 (the manifest may come later and name any of them).
type hashingReader struct {
	r      io.Reader
	hashes map[string]hash.Hash
}

func newHashingReader(r io.Reader) *hashingReader {
	return &hashingReader{r: r, hashes: map[string]hash.Hash{
		"SHA1": newHash("SHA1"), "SHA256": newHash("SHA256"), "SHA512": newHash("SHA512")}}
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	for _, x := range h.hashes {
		x.Write(p[:n])
	}
	return n, err
}

// NewStreamReader reads the descriptor of the OVA on r. name is used in
// messages ("-" for standard input).
func NewStreamReader(r io.Reader, name string, opt Disks) (*StreamReader, error) {
	s := &StreamReader{name: name, tr: tar.NewReader(r), opt: opt, sums: map[string][]byte{},
		algo: map[string]string{}, seen: map[string]bool{}, handed: map[int]bool{}}
	for {
		hdr, err := s.next()
		if err == io.EOF {
			s.cleanup()
			return nil, fmt.Errorf("ova %s: no .ovf descriptor in the archive", name)
		}
		if err != nil {
			s.cleanup()
			return nil, err
		}
		n := memberName(hdr.Name)
		switch {
		case strings.HasSuffix(strings.ToLower(n), ".ovf"):
			if err := s.readDescriptor(hdr, n); err != nil {
				s.cleanup()
				return nil, err
			}
			return s, nil
		case strings.HasSuffix(strings.ToLower(n), ".mf"):
			if err := s.readManifest(hdr, n); err != nil {
				s.cleanup()
				return nil, err
			}
		default:
			if err := s.spool(hdr, n); err != nil {
				s.cleanup()
				return nil, err
			}
		}
	}
}

// next returns the next regular member.
func (s *StreamReader) next() (*tar.Header, error) {
	for {
		hdr, err := s.tr.Next()
		if err == io.EOF {
			return nil, io.EOF
		}
		if err != nil {
			return nil, fmt.Errorf("ova %s: %w", s.name, err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir, tar.TypeXGlobalHeader:
			continue
		case tar.TypeReg, tar.TypeRegA:
		default:
			return nil, fmt.Errorf("ova %s: member %q: tar type %q, want a regular file", s.name, clip(hdr.Name), hdr.Typeflag)
		}
		if len(s.seen) >= maxMembers {
			return nil, fmt.Errorf("ova %s: more than %d members", s.name, maxMembers)
		}
		if s.seen[memberName(hdr.Name)] {
			return nil, fmt.Errorf("ova %s: member %q appears twice", s.name, clip(hdr.Name))
		}
		s.seen[memberName(hdr.Name)] = true
		return hdr, nil
	}
}

// record keeps a finished member's digests and checks them when the
// manifest is known.
func (s *StreamReader) record(n string, h *hashingReader) error {
	if s.mf != nil {
		if e, ok := s.mf.Entries[n]; ok {
			return s.mf.Check(n, h.hashes[e.Algo].Sum(nil))
		}
		return nil
	}
	for algo, x := range h.hashes {
		s.sums[n+"\x00"+algo] = x.Sum(nil)
	}
	s.algo[n] = ""
	return nil
}

func (s *StreamReader) readSmall(hdr *tar.Header, n string, limit int64) ([]byte, error) {
	if hdr.Size > limit {
		return nil, fmt.Errorf("ova %s: %s of %d bytes is larger than the %d allowed", s.name, n, hdr.Size, limit)
	}
	h := newHashingReader(s.tr)
	data, err := io.ReadAll(h)
	if err != nil {
		return nil, fmt.Errorf("ova %s: %s: %w", s.name, n, err)
	}
	return data, s.record(n, h)
}

func (s *StreamReader) readDescriptor(hdr *tar.Header, n string) error {
	data, err := s.readSmall(hdr, n, MaxDescriptorSize)
	if err != nil {
		return err
	}
	env, err := Parse(s.name+":"+n, data)
	if err != nil {
		return err
	}
	mp, err := ToVM(env, s.name+":"+n)
	if err != nil {
		return err
	}
	mp.VM.Source = &neutral.Source{Format: OVAFormat, File: s.name}
	s.mp = mp
	for i, c := range mp.Contents {
		if c.Blank {
			s.blanks = append(s.blanks, i)
		}
		if c.ChunkSize > 0 {
			return fmt.Errorf("ova %s: file %q is split into chunks (ovf:chunkSize), which only an OVA read from a file can join", s.name, clip(c.Href))
		}
	}
	return nil
}

// readManifest parses the manifest and checks what has passed already.
func (s *StreamReader) readManifest(hdr *tar.Header, n string) error {
	if s.mf != nil {
		return nil // a second manifest is only hashed
	}
	if hdr.Size > MaxManifestSize {
		return fmt.Errorf("ova %s: %s of %d bytes is larger than the %d allowed", s.name, n, hdr.Size, MaxManifestSize)
	}
	data, err := io.ReadAll(s.tr)
	if err != nil {
		return fmt.Errorf("ova %s: %s: %w", s.name, n, err)
	}
	mf, err := ParseManifest(s.name+":"+n, data)
	if err != nil {
		return err
	}
	s.mf = mf
	for member := range s.algo {
		if e, ok := mf.Entries[member]; ok {
			if err := mf.Check(member, s.sums[member+"\x00"+e.Algo]); err != nil {
				return err
			}
		}
	}
	return nil
}

// spool copies a member that precedes the descriptor to an unlinked
// temporary file.
func (s *StreamReader) spool(hdr *tar.Header, n string) error {
	if len(s.spooled) >= maxSpooledMembers {
		return fmt.Errorf("ova %s: more than %d members before the .ovf descriptor", s.name, maxSpooledMembers)
	}
	f, err := os.CreateTemp("", "vmconv-ova-*-"+path.Base(n))
	if err != nil {
		return err
	}
	os.Remove(f.Name())
	h := newHashingReader(s.tr)
	if _, err := io.Copy(f, h); err != nil {
		f.Close()
		return fmt.Errorf("ova %s: %s: %w", s.name, n, err)
	}
	s.spooled = append(s.spooled, spooled{name: n, f: f})
	return s.record(n, h)
}

func (s *StreamReader) cleanup() {
	for _, sp := range s.spooled {
		sp.f.Close()
	}
	s.spooled = nil
}

// VM returns the VM the descriptor describes; its drives have no Image.
func (s *StreamReader) VM() *neutral.VM { return s.mp.VM }

// Warnings are what the user should be told about the descriptor.
func (s *StreamReader) Warnings() []string { return s.mp.Warnings }

// Close releases temporary files.
func (s *StreamReader) Close() error { s.cleanup(); return nil }

// driveFor is the drive whose content is member n and not handed out yet.
func (s *StreamReader) driveFor(n string) int {
	for i, c := range s.mp.Contents {
		if c.Href != "" && memberName(c.Href) == n && !s.handed[i] {
			return i
		}
	}
	return -1
}

// NextDisk returns the next drive's content as a stream: disks in archive
// order, then blank disks. Whatever is left of the previous one is read and
// verified first. After the last it checks the archive complete and
// returns io.EOF.
func (s *StreamReader) NextDisk() (string, disk.Stream, error) {
	if s.err != nil {
		return "", nil, s.err
	}
	id, st, err := s.nextDisk()
	if err != nil {
		s.err = err
		s.cleanup()
	}
	return id, st, err
}

func (s *StreamReader) nextDisk() (string, disk.Stream, error) {
	if err := s.finishCurrent(); err != nil {
		return "", nil, err
	}
	for len(s.spooled) > 0 {
		sp := s.spooled[0]
		s.spooled = s.spooled[1:]
		if i := s.driveFor(sp.name); i >= 0 {
			if _, err := sp.f.Seek(0, io.SeekStart); err != nil {
				return "", nil, err
			}
			fi, err := sp.f.Stat()
			if err != nil {
				return "", nil, err
			}
			return s.handOut(i, sp.name, sp.f, fi.Size(), false)
		}
		sp.f.Close()
	}
	for !s.finished {
		hdr, err := s.next()
		if err == io.EOF {
			s.finished = true
			break
		}
		if err != nil {
			return "", nil, err
		}
		n := memberName(hdr.Name)
		if strings.HasSuffix(strings.ToLower(n), ".mf") {
			if err := s.readManifest(hdr, n); err != nil {
				return "", nil, err
			}
			continue
		}
		if i := s.driveFor(n); i >= 0 {
			c := s.mp.Contents[i]
			if c.Size >= 0 && c.Size != hdr.Size {
				return "", nil, fmt.Errorf("ova %s: %q is %d bytes in the archive, the descriptor says ovf:size=%d", s.name, clip(n), hdr.Size, c.Size)
			}
			return s.handOut(i, n, s.tr, hdr.Size, true)
		}
		// Anything else (.cert, extra files) is hashed and passed over.
		h := newHashingReader(s.tr)
		if _, err := io.Copy(io.Discard, h); err != nil {
			return "", nil, fmt.Errorf("ova %s: %s: %w", s.name, n, err)
		}
		if err := s.record(n, h); err != nil {
			return "", nil, err
		}
	}
	if len(s.blanks) > 0 {
		i := s.blanks[0]
		s.blanks = s.blanks[1:]
		s.handed[i] = true
		return s.mp.VM.Disks[i].ID, &zeroStream{size: s.mp.VM.Disks[i].CapacityBytes}, nil
	}
	return "", nil, s.finish()
}

// handOut opens drive i's stream over r (the tar member or a spooled file).
func (s *StreamReader) handOut(i int, n string, r io.Reader, size int64, live bool) (string, disk.Stream, error) {
	c := s.mp.Contents[i]
	d := s.mp.VM.Disks[i]
	gz, err := gzipped(c.Compression)
	if err != nil {
		return "", nil, fmt.Errorf("ova %s: %q: %w", s.name, clip(n), err)
	}
	if gz && c.DiskFormat == "raw" {
		return "", nil, fmt.Errorf("ova %s: %q is a gzip-compressed ISO, whose size a pipe cannot tell; read the OVA from a file", s.name, clip(n))
	}
	s.handed[i] = true
	h := newHashingReader(r)
	if live {
		s.cur, s.curName = h, n
	}
	var src io.Reader = h
	if gz {
		if src, err = gunzip(h, inflateLimit(d.CapacityBytes, d.Device)); err != nil {
			return "", nil, fmt.Errorf("ova %s: %q: %w", s.name, clip(n), err)
		}
	}
	var st disk.Stream
	if c.DiskFormat == "raw" {
		st = &rawStream{r: h, size: size}
	} else {
		if s.opt.OpenStream == nil {
			return "", nil, errors.New("ova: no stream opener")
		}
		st, err = s.opt.OpenStream(src, c.DiskFormat)
		if err != nil {
			return "", nil, fmt.Errorf("ova %s: %s %s: file %q: %w", s.name, d.Device, d.ID, clip(n), err)
		}
	}
	if !live {
		// A spooled member was hashed when it was copied.
		s.cur = nil
	}
	return d.ID, st, nil
}

// finishCurrent reads the rest of the member being handed out and checks
// its digest.
func (s *StreamReader) finishCurrent() error {
	if s.cur == nil {
		return nil
	}
	h, n := s.cur, s.curName
	s.cur = nil
	if _, err := io.Copy(io.Discard, h); err != nil {
		return fmt.Errorf("ova %s: %s: %w", s.name, n, err)
	}
	return s.record(n, h)
}

// finish checks that every drive got its file and every manifest entry
// was in the archive.
func (s *StreamReader) finish() error {
	for i, c := range s.mp.Contents {
		if c.Href != "" && !s.handed[i] {
			return fmt.Errorf("ova %s: %s %s: file %q is not in the archive", s.name, s.mp.VM.Disks[i].Device, s.mp.VM.Disks[i].ID, clip(c.Href))
		}
	}
	if s.mf != nil {
		for _, n := range s.mf.Order {
			if !s.seen[n] {
				return fmt.Errorf("ova %s: the manifest lists %q, which is not in the archive", s.name, clip(n))
			}
		}
	}
	s.cleanup()
	return io.EOF
}

// rawStream hands out a raw member (an ISO) in chunks.
type rawStream struct {
	r    io.Reader
	size int64
	off  int64
	buf  []byte
}

func (r *rawStream) Size() int64 { return r.size }

func (r *rawStream) Next() (int64, []byte, error) {
	if r.off >= r.size {
		return 0, nil, io.EOF
	}
	if r.buf == nil {
		r.buf = make([]byte, disk.ChunkSize)
	}
	n, err := io.ReadFull(r.r, r.buf[:min(int64(len(r.buf)), r.size-r.off)])
	if n == 0 {
		if err == nil || err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		return 0, nil, err
	}
	off := r.off
	r.off += int64(n)
	return off, r.buf[:n], nil
}

// zeroStream is a blank disk: no runs at all.
type zeroStream struct{ size int64 }

func (z *zeroStream) Size() int64                  { return z.size }
func (z *zeroStream) Next() (int64, []byte, error) { return 0, nil, io.EOF }
