package ovf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/neutral"
)

// Disks opens the disk files a package holds. The registry supplies it, so
// this package imports no other format package.
type Disks struct {
	// Open opens the disk file at path; format is a registry name from the
	// descriptor ("vmdk", "raw", …) or "" to detect it.
	Open func(path, format string) (disk.Image, error)
	// OpenAt opens a disk held in an archive member. When nil, or when it
	// returns ErrNeedFile, the member is copied to an unlinked temporary
	// file and opened with Open.
	OpenAt func(name string, r io.ReaderAt, size int64, format string) (disk.Image, error)
	// OpenStream reads a disk once, front to back (StreamVM).
	OpenStream func(r io.Reader, format string) (disk.Stream, error)
}

// ErrNeedFile is returned by Disks.OpenAt for a format that can only be
// opened from a file.
var ErrNeedFile = errors.New("format needs a file")

// ReadOptions tune Read.
type ReadOptions struct {
	Disks Disks
	// MarkMissing describes a VM whose disk files are absent: such disks are
	// marked Missing instead of failing the read (for `info`). Files are
	// not hashed then, except the descriptor itself.
	MarkMissing bool
}

// Result is a VM read from a package with what the user should be told.
type Result struct {
	VM       *neutral.VM
	Warnings []string
}

// Read reads an .ovf (with its files beside it) or an .ova (any tar).
func Read(path string, opt ReadOptions) (*Result, error) {
	f, err := disk.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("ovf: %w", err)
	}
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	f.Close()
	if n == 512 && validTarChecksum(head) {
		return ReadOVA(path, opt)
	}
	return readOVF(path, opt)
}

// readFileLimited reads a whole small file, refusing one above limit.
func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := disk.OpenFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than the %d bytes allowed", path, limit)
	}
	return data, nil
}

// readOVF reads a descriptor from a directory of files.
func readOVF(path string, opt ReadOptions) (*Result, error) {
	data, err := readFileLimited(path, MaxDescriptorSize)
	if err != nil {
		return nil, fmt.Errorf("ovf: %w", err)
	}
	// The descriptor is checked against the manifest before it is parsed.
	mf, err := dirManifest(path)
	if err != nil {
		return nil, err
	}
	if err := mf.Verify(filepath.Base(path), bytes.NewReader(data)); err != nil {
		return nil, err
	}
	env, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	mp, err := ToVM(env, path)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	res := &Result{VM: mp.VM, Warnings: mp.Warnings}
	mp.VM.Source = &neutral.Source{Format: Format, File: path}
	for i := range mp.VM.Disks {
		if err := openDirDrive(mp, i, dir, mf, opt); err != nil {
			mp.VM.Close()
			return nil, err
		}
	}
	return res, nil
}

// dirManifest reads NAME.mf beside NAME.ovf, or nil when there is none.
func dirManifest(ovfPath string) (*Manifest, error) {
	p := strings.TrimSuffix(ovfPath, filepath.Ext(ovfPath)) + ".mf"
	data, err := readFileLimited(p, MaxManifestSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ovf: manifest: %w", err)
	}
	return ParseManifest(p, data)
}

// hrefPath resolves a References href against the descriptor's directory.
func hrefPath(dir, href string) (string, error) {
	if strings.Contains(href, "://") {
		return "", fmt.Errorf("href %q: remote files are not supported; download them beside the .ovf", clip(href))
	}
	h := filepath.FromSlash(href)
	if filepath.IsAbs(h) {
		return h, nil
	}
	return filepath.Join(dir, h), nil
}

// openDirDrive gives drive i of the mapped VM its content.
func openDirDrive(mp *Mapped, i int, dir string, mf *Manifest, opt ReadOptions) error {
	d, c := &mp.VM.Disks[i], mp.Contents[i]
	where := fmt.Sprintf("ovf %s: %s %s", mp.VM.Source.File, d.Device, d.ID)
	switch {
	case c.Blank:
		d.Image = blankImage(d.CapacityBytes)
		return nil
	case c.Href == "":
		return nil // an empty CD-ROM drive
	}
	gz, err := gzipped(c.Compression)
	if err != nil {
		return fmt.Errorf("%s: file %q: %w", where, clip(c.Href), err)
	}
	if c.ChunkSize > 0 {
		return openDirChunked(d, c, dir, mf, opt, gz, where)
	}
	p, err := hrefPath(dir, c.Href)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		if opt.MarkMissing {
			d.Missing, d.File = true, p
			return nil
		}
		return fmt.Errorf("%s: file %q: %s not found", where, clip(c.Href), p)
	}
	if mf != nil && !opt.MarkMissing {
		if err := verifyFile(mf, c.Href, p); err != nil {
			return err
		}
	}
	if opt.Disks.Open == nil {
		return fmt.Errorf("%s: no disk opener", where)
	}
	var img disk.Image
	if gz {
		img, err = openGzipFile(p, c.DiskFormat, inflateLimit(d.CapacityBytes, d.Device), opt.Disks.Open)
	} else {
		img, err = opt.Disks.Open(p, c.DiskFormat)
	}
	if err != nil {
		return fmt.Errorf("%s: file %q: %w", where, clip(c.Href), err)
	}
	d.Image = img
	d.CapacityBytes = img.Size()
	return nil
}

// openDirChunked gives a drive the content of a file split into chunks
// beside the descriptor: joined (and decompressed) into an unlinked
// temporary file, which is opened.
func openDirChunked(d *neutral.Disk, c Content, dir string, mf *Manifest, opt ReadOptions, gz bool, where string) error {
	if opt.MarkMissing {
		mf = nil // describing the VM: the chunks are not read
	}
	r, n, closeChunks, err := dirChunks(c, dir, mf)
	if err != nil {
		return fmt.Errorf("%s: file %q: %w", where, clip(c.Href), err)
	}
	if n == 0 {
		p, _ := hrefPath(dir, chunkName(c.Href, 0))
		if opt.MarkMissing {
			d.Missing, d.File = true, p
			return nil
		}
		return fmt.Errorf("%s: file %q (ovf:chunkSize=%d): its first chunk, %s, is not found", where, clip(c.Href), c.ChunkSize, p)
	}
	defer closeChunks()
	if opt.Disks.Open == nil {
		return fmt.Errorf("%s: no disk opener", where)
	}
	img, err := joinAndOpen(r, c, d, gz, opt.Disks.Open)
	if err != nil {
		return fmt.Errorf("%s: file %q: %w", where, clip(c.Href), err)
	}
	d.Image = img
	d.CapacityBytes = img.Size()
	return nil
}

// joinAndOpen spools the joined chunks of a file (gunzipped when gz) and
// opens the result.
func joinAndOpen(r io.Reader, c Content, d *neutral.Disk, gz bool, open func(string, string) (disk.Image, error)) (disk.Image, error) {
	if gz {
		var err error
		if r, err = gunzip(r, inflateLimit(d.CapacityBytes, d.Device)); err != nil {
			return nil, err
		}
	}
	return spoolAndOpen(r, path.Base(c.Href), c.DiskFormat, open)
}

// openGzipFile decompresses a file to an unlinked temporary file and opens
// that.
func openGzipFile(p, format string, limit int64, open func(string, string) (disk.Image, error)) (disk.Image, error) {
	f, err := disk.OpenFile(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := gunzip(f, limit)
	if err != nil {
		return nil, err
	}
	return spoolAndOpen(r, filepath.Base(p), format, open)
}

func verifyFile(mf *Manifest, name, path string) error {
	f, err := disk.OpenFile(path)
	if err != nil {
		return fmt.Errorf("ovf: %w", err)
	}
	defer f.Close()
	return mf.Verify(name, f)
}

// blankImage is a disk of zeros: a DiskSection disk without a file.
type blank struct{ size int64 }

func blankImage(size int64) disk.Image { return &blank{size: size} }

func (b *blank) Size() int64  { return b.size }
func (b *blank) Close() error { return nil }

func (b *blank) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, disk.ErrOutOfRange
	}
	if off >= b.size {
		return 0, io.EOF
	}
	n := len(p)
	if int64(n) > b.size-off {
		n = int(b.size - off)
	}
	clear(p[:n])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (b *blank) Extents(off, length int64) ([]disk.Extent, error) {
	if off < 0 || length <= 0 || off >= b.size {
		return nil, nil
	}
	end := min(off+length, b.size)
	return []disk.Extent{{Offset: off, Length: end - off, Kind: disk.Unallocated}}, nil
}
