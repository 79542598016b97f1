package neutral

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmconv/vmconv/disk"
)

// A bundle tar (NAME.vmb.tar) is the bundle tree in one ustar archive, for
// transport:
//
//	chunks/<hh>/<sha256>    every chunk the disks use, once, in disk order
//	disks/<id>.json         the chunk lists (store "chunks")
//	vm.json
//
// The metadata comes last so the archive can be written in one pass, to a
// pipe as well as a file; it is read from a file, with random access to the
// chunks.

// TarExt is the extension of bundle tar files.
const TarExt = ".vmb.tar"

// IsTar reports whether path names a bundle tar: by its extension, or "-"
// (standard output) when writing.
func IsTar(path string) bool {
	return path == disk.Stdout || strings.HasSuffix(path, TarExt)
}

// tarTime is the modification time of every member: the archive depends on
// the VM only.
var tarTime = time.Unix(0, 0)

// tarSink writes chunks as tar members. put is only called from the copy
// engine's delivering goroutine; has from any.
type tarSink struct {
	tw     *tar.Writer
	mu     sync.Mutex
	seen   map[[32]byte]bool
	reused int64
}

func (s *tarSink) has(sum *[32]byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[*sum]
}

// flush has nothing to wait for: put writes the member before returning.
func (s *tarSink) flush() error { return nil }

func (s *tarSink) noteReused() {
	s.mu.Lock()
	s.reused++
	s.mu.Unlock()
}

func (s *tarSink) put(sum *[32]byte, payload []byte) error {
	if s.has(sum) {
		s.noteReused()
		return nil
	}
	h := hex.EncodeToString(sum[:])
	if err := writeTarFile(s.tw, "chunks/"+h[:2]+"/"+h, payload); err != nil {
		return err
	}
	s.mu.Lock()
	s.seen[*sum] = true
	s.mu.Unlock()
	return nil
}

func writeTarFile(tw *tar.Writer, name string, data []byte) error {
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     int64(len(data)),
		Mode:     0o644,
		ModTime:  tarTime,
		Format:   tar.FormatUSTAR,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// writeBundleTar writes vm as a bundle tar to w (see WriteBundle).
func writeBundleTar(ctx context.Context, w io.Writer, path string, vm *VM, opt BundleOptions) error {
	if opt.Store != "" {
		return fmt.Errorf("bundle %s: a bundle tar holds its own chunks; --store applies to bundle directories", path)
	}
	if err := prepareVM(path, vm); err != nil {
		return err
	}
	comp, err := newCompressor(opt.Level)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", path, err)
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	tw := tar.NewWriter(bw)
	sink := &tarSink{tw: tw, seen: map[[32]byte]bool{}}
	var lists []*chunkList
	for i := range vm.Disks {
		d := &vm.Disks[i]
		if d.Image == nil {
			continue
		}
		cw, err := newChunkWriter(comp, sink, d.ID, "chunks", d.Image.Size(), func(l *chunkList) error {
			lists = append(lists, l)
			return nil
		})
		if err != nil {
			return fmt.Errorf("bundle %s: disk %s: %w", path, d.ID, err)
		}
		if err := disk.Copy(ctx, d.Image, cw, opt.Copy); err != nil {
			cw.abort()
			return fmt.Errorf("bundle %s: disk %s: %w", path, d.ID, err)
		}
		d.Digest = cw.list.Digest
	}
	for _, l := range lists {
		var b bytes.Buffer
		if err := l.encode(&b); err != nil {
			return fmt.Errorf("bundle %s: %w", path, err)
		}
		if err := writeTarFile(tw, "disks/"+l.ID+".json", b.Bytes()); err != nil {
			return fmt.Errorf("bundle %s: %w", path, err)
		}
	}
	data, err := vm.MarshalIndent()
	if err != nil {
		return fmt.Errorf("bundle %s: vm.json: %w", path, err)
	}
	if err := writeTarFile(tw, "vm.json", data); err != nil {
		return fmt.Errorf("bundle %s: %w", path, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("bundle %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("bundle %s: %w", path, err)
	}
	return nil
}

// tarMember is a file inside a bundle tar.
type tarMember struct {
	off, size int64
}

// tarFile is a bundle tar open for reading, shared by its disk images.
type tarFile struct {
	path    string
	f       *os.File
	refs    atomic.Int32
	chunks  map[[32]byte]tarMember
	members map[string]tarMember // vm.json and disks/*.json
}

// openBundleTar indexes the bundle tar at path and opens its VM.
func openBundleTar(path string) (*VM, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	t := &tarFile{path: path, f: f, chunks: map[[32]byte]tarMember{}, members: map[string]tarMember{}}
	t.refs.Store(1)
	vm, err := t.open()
	t.release() // the images hold their own references
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", path, err)
	}
	return vm, nil
}

func (t *tarFile) index() error {
	fi, err := t.f.Stat()
	if err != nil {
		return err
	}
	sr := io.NewSectionReader(t.f, 0, fi.Size())
	tr := tar.NewReader(sr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			pos, _ := sr.Seek(0, io.SeekCurrent)
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("tar header near offset %d: truncated archive", pos)
			}
			return fmt.Errorf("tar header near offset %d: %w", pos, err)
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		if hdr.Typeflag == tar.TypeDir {
			continue // nothing is ever extracted: directories do not matter
		}
		if hdr.Typeflag != tar.TypeReg {
			return fmt.Errorf("member %q: type %q is not a regular file", hdr.Name, hdr.Typeflag)
		}
		off, _ := sr.Seek(0, io.SeekCurrent)
		if hdr.Size > fi.Size()-off {
			return fmt.Errorf("member %q: %d bytes at offset %d run past the end of the file (%d bytes): truncated archive", hdr.Name, hdr.Size, off, fi.Size())
		}
		m := tarMember{off: off, size: hdr.Size}
		switch {
		case name == "vm.json" || strings.HasPrefix(name, "disks/") && strings.HasSuffix(name, ".json") && ValidDiskID(strings.TrimSuffix(strings.TrimPrefix(name, "disks/"), ".json")):
			if _, dup := t.members[name]; dup {
				return fmt.Errorf("member %q appears twice", hdr.Name)
			}
			t.members[name] = m
		case strings.HasPrefix(name, "chunks/") && len(name) == len("chunks/hh/")+64 && isLowerHex64(name[len("chunks/hh/"):]) && name[7:9] == name[10:12] && name[9] == '/':
			var sum [32]byte
			hex.Decode(sum[:], []byte(name[len("chunks/hh/"):]))
			if _, dup := t.chunks[sum]; dup {
				return fmt.Errorf("member %q appears twice", hdr.Name)
			}
			t.chunks[sum] = m
		default:
			return fmt.Errorf("member %q is not part of a bundle (vm.json, disks/<id>.json, chunks/<hh>/<sha256>)", hdr.Name)
		}
	}
}

func (t *tarFile) open() (*VM, error) {
	if err := t.index(); err != nil {
		return nil, err
	}
	m, ok := t.members["vm.json"]
	if !ok {
		return nil, errors.New("vm.json: missing")
	}
	if m.size > MaxVMJSONSize {
		return nil, fmt.Errorf("vm.json: %d bytes, larger than the %d-byte limit for vm.json", m.size, MaxVMJSONSize)
	}
	data := make([]byte, m.size)
	if _, err := t.f.ReadAt(data, m.off); err != nil {
		return nil, fmt.Errorf("vm.json: %w", err)
	}
	vm, err := ParseVM(data, "vm.json")
	if err != nil {
		return nil, err
	}
	for i := range vm.Disks {
		d := &vm.Disks[i]
		img, err := t.openDisk(d)
		if err != nil {
			vm.Close()
			return nil, fmt.Errorf("disks[%d] (%s): %w", i, d.ID, err)
		}
		if img != nil {
			d.Image = img
		}
	}
	return vm, nil
}

func (t *tarFile) openDisk(d *Disk) (disk.Image, error) {
	name := "disks/" + d.ID + ".json"
	m, ok := t.members[name]
	if !ok {
		if d.Device == "cdrom" {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: missing", name)
	}
	if limit := maxListSize(d.CapacityBytes); m.size > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than a chunk list for %d bytes needs (%d)", name, m.size, d.CapacityBytes, limit)
	}
	l, err := parseChunkList(io.NewSectionReader(t.f, m.off, m.size))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := checkList(name, l, d); err != nil {
		return nil, err
	}
	if l.Store != "chunks" {
		return nil, fmt.Errorf("%s: store %q: a bundle tar holds its own chunks (store \"chunks\")", name, l.Store)
	}
	t.refs.Add(1)
	return newBundleImage(t.path, d.ID, l, t), nil
}

func (t *tarFile) name(sum *[32]byte) string {
	h := hex.EncodeToString(sum[:])
	return t.path + ":chunks/" + h[:2] + "/" + h
}

func (t *tarFile) fetch(sum *[32]byte, buf []byte) ([]byte, error) {
	m, ok := t.chunks[*sum]
	if !ok {
		return nil, errors.New("chunk file is missing")
	}
	if m.size > int64(len(buf)) {
		return nil, fmt.Errorf("%w: chunk file is larger than %d bytes", errChunkCorrupt, len(buf))
	}
	n, err := t.f.ReadAt(buf[:m.size], m.off)
	if err != nil && !(err == io.EOF && int64(n) == m.size) {
		return nil, err
	}
	return buf[:n], nil
}

func (t *tarFile) release() error {
	if t.refs.Add(-1) == 0 {
		return t.f.Close()
	}
	return nil
}
