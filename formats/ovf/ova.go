package ovf

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/neutral"
)

// maxMembers bounds the members of an OVA indexed (a package has a few
// files per disk).
const maxMembers = 10000

// IsOVA reports whether head (a file's first 512 bytes) is a tar header
// whose member name ends in .ovf, as an OVA's first member must.
func IsOVA(head []byte) bool {
	if len(head) < 512 {
		return false
	}
	if !bytes.Equal(head[257:262], []byte("ustar")) && !validTarChecksum(head[:512]) {
		return false
	}
	name := head[:100]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return strings.HasSuffix(strings.ToLower(string(name)), ".ovf") && validTarChecksum(head[:512])
}

func validTarChecksum(h []byte) bool {
	var sum int64
	for i, b := range h {
		if i >= 148 && i < 156 {
			b = ' '
		}
		sum += int64(b)
	}
	field := bytes.Trim(h[148:156], " \x00")
	var want int64
	for _, c := range field {
		if c < '0' || c > '7' {
			return false
		}
		want = want*8 + int64(c-'0')
	}
	return len(field) > 0 && want == sum
}

// member is one regular file of an OVA.
type member struct {
	name   string
	offset int64 // of the data in the archive
	size   int64
}

// archive is an OVA opened for random access; shared by the images opened
// from it and closed with the last of them.
type archive struct {
	name    string
	f       *os.File
	members []member
	mu      sync.Mutex
	refs    int
}

func (a *archive) acquire() { a.mu.Lock(); a.refs++; a.mu.Unlock() }

func (a *archive) release() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refs--
	if a.refs == 0 {
		return a.f.Close()
	}
	return nil
}

func (a *archive) find(name string) *member {
	for i := range a.members {
		if a.members[i].name == name {
			return &a.members[i]
		}
	}
	return nil
}

func (a *archive) section(m *member) *io.SectionReader {
	return io.NewSectionReader(a.f, m.offset, m.size)
}

// memberName cleans a tar name ("./x.vmdk" → "x.vmdk").
func memberName(n string) string {
	return strings.TrimPrefix(path.Clean("/"+n), "/")
}

// indexOVA lists the regular members of the tar at f without reading
// their data (the tar reader seeks over it).
func indexOVA(name string, f *os.File) ([]member, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	sr := io.NewSectionReader(f, 0, fi.Size())
	tr := tar.NewReader(sr)
	var out []member
	for {
		before, _ := sr.Seek(0, io.SeekCurrent)
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("ova %s: tar header near offset %#x: %w", name, before, err)
		}
		if hdr.Typeflag == tar.TypeDir || hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
			return nil, fmt.Errorf("ova %s: member %q: tar type %q, want a regular file", name, clip(hdr.Name), hdr.Typeflag)
		}
		for k := range hdr.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				return nil, fmt.Errorf("ova %s: member %q is a sparse tar entry, which is not supported", name, clip(hdr.Name))
			}
		}
		pos, err := sr.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		if hdr.Size < 0 || pos+hdr.Size > fi.Size() {
			return nil, fmt.Errorf("ova %s: member %q of %d bytes at offset %#x runs past the end of the file (%d bytes): truncated",
				name, clip(hdr.Name), hdr.Size, pos, fi.Size())
		}
		if len(out) >= maxMembers {
			return nil, fmt.Errorf("ova %s: more than %d members", name, maxMembers)
		}
		out = append(out, member{name: memberName(hdr.Name), offset: pos, size: hdr.Size})
	}
	return out, nil
}

// ReadOVA reads an OVA file with random access to its members.
func ReadOVA(name string, opt ReadOptions) (_ *Result, err error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("ova: %w", err)
	}
	a := &archive{name: name, f: f, refs: 1}
	defer a.release() // the images hold their own references
	a.members, err = indexOVA(name, f)
	if err != nil {
		return nil, err
	}
	var desc *member
	for i := range a.members {
		if strings.HasSuffix(strings.ToLower(a.members[i].name), ".ovf") {
			desc = &a.members[i]
			break
		}
	}
	if desc == nil {
		return nil, fmt.Errorf("ova %s: no .ovf descriptor among its %d members", name, len(a.members))
	}
	var warnings []string
	if desc != &a.members[0] {
		warnings = append(warnings, fmt.Sprintf("the descriptor %q is not the archive's first member, as OVF requires", desc.name))
	}
	if desc.size > MaxDescriptorSize {
		return nil, fmt.Errorf("ova %s: descriptor %q of %d bytes is larger than the %d allowed", name, desc.name, desc.size, MaxDescriptorSize)
	}
	data := make([]byte, desc.size)
	if _, err := io.ReadFull(a.section(desc), data); err != nil {
		return nil, fmt.Errorf("ova %s: %s: %w", name, desc.name, err)
	}
	// The descriptor is checked against the manifest before it is parsed.
	mf, err := a.manifest(desc)
	if err != nil {
		return nil, err
	}
	if err := mf.Verify(desc.name, bytes.NewReader(data)); err != nil {
		return nil, err
	}
	env, err := Parse(name+":"+desc.name, data)
	if err != nil {
		return nil, err
	}
	mp, err := ToVM(env, name+":"+desc.name)
	if err != nil {
		return nil, err
	}
	mp.VM.Source = &neutral.Source{Format: OVAFormat, File: name}
	if !opt.MarkMissing {
		if err := a.verify(mf, desc); err != nil {
			return nil, err
		}
	}
	for i := range mp.VM.Disks {
		if err := a.openDrive(mp, i, opt); err != nil {
			mp.VM.Close()
			return nil, err
		}
	}
	return &Result{VM: mp.VM, Warnings: append(warnings, mp.Warnings...)}, nil
}

// manifest reads the archive's .mf (the one named after the descriptor,
// else any), or nil.
func (a *archive) manifest(desc *member) (*Manifest, error) {
	want := strings.TrimSuffix(desc.name, path.Ext(desc.name)) + ".mf"
	m := a.find(want)
	if m == nil {
		for i := range a.members {
			if strings.HasSuffix(strings.ToLower(a.members[i].name), ".mf") {
				m = &a.members[i]
				break
			}
		}
	}
	if m == nil {
		return nil, nil
	}
	if m.size > MaxManifestSize {
		return nil, fmt.Errorf("ova %s: manifest %q of %d bytes is larger than the %d allowed", a.name, m.name, m.size, MaxManifestSize)
	}
	data := make([]byte, m.size)
	if _, err := io.ReadFull(a.section(m), data); err != nil {
		return nil, fmt.Errorf("ova %s: %s: %w", a.name, m.name, err)
	}
	return ParseManifest(a.name+":"+m.name, data)
}

// verify checks every other file the manifest lists against the archive;
// a listed file that is absent is an error.
func (a *archive) verify(mf *Manifest, desc *member) error {
	if mf == nil {
		return nil
	}
	for _, n := range mf.Order {
		if n == desc.name {
			continue
		}
		m := a.find(n)
		if m == nil {
			return fmt.Errorf("ova %s: the manifest lists %q, which is not in the archive", a.name, clip(n))
		}
		if err := mf.Verify(n, a.section(m)); err != nil {
			return err
		}
	}
	return nil
}

// openDrive gives drive i its content from the archive.
func (a *archive) openDrive(mp *Mapped, i int, opt ReadOptions) error {
	d, c := &mp.VM.Disks[i], mp.Contents[i]
	where := fmt.Sprintf("ova %s: %s %s", a.name, d.Device, d.ID)
	switch {
	case c.Blank:
		d.Image = blankImage(d.CapacityBytes)
		return nil
	case c.Href == "":
		return nil
	}
	gz, err := gzipped(c.Compression)
	if err != nil {
		return fmt.Errorf("%s: file %q: %w", where, clip(c.Href), err)
	}
	if c.ChunkSize > 0 {
		return a.openChunked(d, c, opt, gz, where)
	}
	m := a.find(memberName(c.Href))
	if m == nil {
		if opt.MarkMissing {
			d.Missing, d.File = true, c.Href
			return nil
		}
		return fmt.Errorf("%s: file %q is not in the archive", where, clip(c.Href))
	}
	if c.Size >= 0 && c.Size != m.size {
		return fmt.Errorf("%s: file %q is %d bytes in the archive, the descriptor says ovf:size=%d", where, clip(c.Href), m.size, c.Size)
	}
	var img disk.Image
	if gz {
		var r io.Reader
		if r, err = gunzip(a.section(m), inflateLimit(d.CapacityBytes, d.Device)); err == nil {
			img, err = spoolAndOpen(r, m.name, c.DiskFormat, opt.Disks.Open)
		}
	} else {
		img, err = a.openMember(m, c.DiskFormat, opt)
	}
	if err != nil {
		return fmt.Errorf("%s: file %q: %w", where, clip(c.Href), err)
	}
	d.Image = img
	d.CapacityBytes = img.Size()
	return nil
}

// openChunked gives a drive the content of a file split into chunk
// members (the manifest's digests of them were checked with the others).
func (a *archive) openChunked(d *neutral.Disk, c Content, opt ReadOptions, gz bool, where string) error {
	n, err := chunkSet(c, func(name string) (int64, bool) {
		if m := a.find(memberName(name)); m != nil {
			return m.size, true
		}
		return 0, false
	})
	if err != nil {
		return fmt.Errorf("%s: file %q: %w", where, clip(c.Href), err)
	}
	if n == 0 {
		if opt.MarkMissing {
			d.Missing, d.File = true, chunkName(c.Href, 0)
			return nil
		}
		return fmt.Errorf("%s: file %q (ovf:chunkSize=%d): its first chunk, %q, is not in the archive", where, clip(c.Href), c.ChunkSize, clip(chunkName(c.Href, 0)))
	}
	if opt.Disks.Open == nil {
		return errors.New("no disk opener")
	}
	readers := make([]io.Reader, n)
	for i := range n {
		readers[i] = a.section(a.find(memberName(chunkName(c.Href, i))))
	}
	img, err := joinAndOpen(io.MultiReader(readers...), c, d, gz, opt.Disks.Open)
	if err != nil {
		return fmt.Errorf("%s: file %q: %w", where, clip(c.Href), err)
	}
	d.Image = img
	d.CapacityBytes = img.Size()
	return nil
}

// openMember opens a member as a disk image that keeps the archive open.
func (a *archive) openMember(m *member, format string, opt ReadOptions) (disk.Image, error) {
	if format == "raw" {
		a.acquire()
		return &memberImage{Image: disk.FromReaderAt(a.section(m), m.size), a: a}, nil
	}
	if opt.Disks.OpenAt != nil {
		img, err := opt.Disks.OpenAt(a.name+":"+m.name, a.section(m), m.size, format)
		if err == nil {
			a.acquire()
			return &memberImage{Image: img, a: a}, nil
		}
		if !errors.Is(err, ErrNeedFile) {
			return nil, err
		}
	}
	if opt.Disks.Open == nil {
		return nil, errors.New("no disk opener")
	}
	return spoolAndOpen(a.section(m), m.name, format, opt.Disks.Open)
}

// spoolAndOpen copies r to a temporary file, opens it, and unlinks it (the
// open image keeps it).
func spoolAndOpen(r io.Reader, name, format string, open func(string, string) (disk.Image, error)) (disk.Image, error) {
	tmp, err := os.CreateTemp("", "vmconv-ova-*-"+path.Base(name))
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := io.Copy(tmp, r); err != nil {
		return nil, fmt.Errorf("copy to %s: %w", tmp.Name(), err)
	}
	return open(tmp.Name(), format)
}

// memberImage is an image read from an archive member; closing it releases
// the archive.
type memberImage struct {
	disk.Image
	a    *archive
	once sync.Once
}

func (m *memberImage) Close() error {
	var err error
	m.once.Do(func() {
		err = errors.Join(m.Image.Close(), m.a.release())
	})
	return err
}
