// Package fat is a small read-only reader of FAT12, FAT16 and FAT32 volumes
// (EFI system partitions, syslinux boot partitions) through an io.ReaderAt,
// with long file names. Names match case-insensitively, as on FAT.
//
// It is our own rather than go-diskfs's fat32 package, which reads FAT32 only
// and wants a seekable file.
package fat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"unicode/utf16"
)

// MaxFileSize is the largest file ReadFile returns.
const MaxFileSize = 512 << 20

const maxDirEntries = 1 << 16

// FS is an open FAT volume.
type FS struct {
	r            io.ReaderAt
	size         int64
	Type         int // 12, 16 or 32
	bytesPerSec  int64
	secPerClus   int64
	reservedSec  int64
	numFATs      int64
	rootEntries  int64
	fatSize      int64 // sectors
	totalSec     int64
	rootCluster  uint32
	dataStart    int64 // byte offset of cluster 2
	rootDirStart int64 // byte offset of the FAT12/16 root directory
	clusterCount uint32
	clusterSize  int64
	volumeID     uint32
	label        string
	fat          []byte
}

// Open reads the boot sector and the first FAT of the volume in r.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	b := make([]byte, 512)
	if err := readFull(r, b, 0); err != nil {
		return nil, fmt.Errorf("fat: boot sector: %w", err)
	}
	le := binary.LittleEndian
	if b[510] != 0x55 || b[511] != 0xaa {
		return nil, errors.New("fat: boot sector: no 55 AA signature")
	}
	f := &FS{r: r, size: size}
	f.bytesPerSec = int64(le.Uint16(b[11:]))
	f.secPerClus = int64(b[13])
	f.reservedSec = int64(le.Uint16(b[14:]))
	f.numFATs = int64(b[16])
	f.rootEntries = int64(le.Uint16(b[17:]))
	f.totalSec = int64(le.Uint16(b[19:]))
	f.fatSize = int64(le.Uint16(b[22:]))
	if f.totalSec == 0 {
		f.totalSec = int64(le.Uint32(b[32:]))
	}
	switch f.bytesPerSec {
	case 512, 1024, 2048, 4096:
	default:
		return nil, fmt.Errorf("fat: boot sector: %d bytes per sector, want 512..4096", f.bytesPerSec)
	}
	if f.secPerClus == 0 || f.secPerClus&(f.secPerClus-1) != 0 {
		return nil, fmt.Errorf("fat: boot sector: %d sectors per cluster, want a power of two", f.secPerClus)
	}
	if f.reservedSec == 0 || f.numFATs == 0 || f.numFATs > 4 {
		return nil, fmt.Errorf("fat: boot sector: %d reserved sectors, %d FATs", f.reservedSec, f.numFATs)
	}
	fat32 := f.fatSize == 0
	if fat32 {
		f.fatSize = int64(le.Uint32(b[36:]))
		f.rootCluster = le.Uint32(b[44:])
		f.volumeID = le.Uint32(b[67:])
		f.label = strings.TrimRight(string(b[71:82]), " ")
	} else {
		f.volumeID = le.Uint32(b[39:])
		f.label = strings.TrimRight(string(b[43:54]), " ")
	}
	if f.totalSec*f.bytesPerSec > size || f.totalSec == 0 {
		return nil, fmt.Errorf("fat: boot sector: %d sectors of %d bytes, but the device holds %d bytes", f.totalSec, f.bytesPerSec, size)
	}
	rootSecs := (f.rootEntries*32 + f.bytesPerSec - 1) / f.bytesPerSec
	first := f.reservedSec + f.numFATs*f.fatSize + rootSecs
	if f.fatSize == 0 || first >= f.totalSec {
		return nil, fmt.Errorf("fat: boot sector: FAT size %d sectors leaves no data area in %d sectors", f.fatSize, f.totalSec)
	}
	f.rootDirStart = (f.reservedSec + f.numFATs*f.fatSize) * f.bytesPerSec
	f.dataStart = first * f.bytesPerSec
	f.clusterSize = f.secPerClus * f.bytesPerSec
	f.clusterCount = uint32((f.totalSec - first) / f.secPerClus)
	switch {
	case f.clusterCount < 4085:
		f.Type = 12
	case f.clusterCount < 65525:
		f.Type = 16
	default:
		f.Type = 32
	}
	if fat32 != (f.Type == 32) {
		return nil, fmt.Errorf("fat: boot sector: %d clusters mean FAT%d, but the BPB is laid out for %s", f.clusterCount, f.Type, map[bool]string{true: "FAT32", false: "FAT12/16"}[fat32])
	}
	need := (int64(f.clusterCount) + 2) * int64(f.Type) / 8
	if need > f.fatSize*f.bytesPerSec {
		return nil, fmt.Errorf("fat: FAT of %d sectors too small for %d clusters", f.fatSize, f.clusterCount)
	}
	f.fat = make([]byte, need+2)
	if err := readFull(r, f.fat[:need], f.reservedSec*f.bytesPerSec); err != nil {
		return nil, fmt.Errorf("fat: reading the FAT at %#x: %w", f.reservedSec*f.bytesPerSec, err)
	}
	return f, nil
}

// UUID returns the volume serial number as Linux and GRUB spell it ("ABCD-1234").
func (f *FS) UUID() string {
	return fmt.Sprintf("%04X-%04X", f.volumeID>>16, f.volumeID&0xffff)
}

// Label returns the volume label from the boot sector.
func (f *FS) Label() string { return f.label }

func (f *FS) next(c uint32) uint32 {
	switch f.Type {
	case 12:
		o := c + c/2
		v := uint32(binary.LittleEndian.Uint16(f.fat[o:]))
		if c&1 != 0 {
			return v >> 4
		}
		return v & 0xfff
	case 16:
		return uint32(binary.LittleEndian.Uint16(f.fat[2*c:]))
	}
	return binary.LittleEndian.Uint32(f.fat[4*c:]) & 0x0fffffff
}

func (f *FS) isEOC(c uint32) bool {
	switch f.Type {
	case 12:
		return c >= 0xff8
	case 16:
		return c >= 0xfff8
	}
	return c >= 0x0ffffff8
}

// chain returns the clusters of the chain starting at c, at most limit of them.
func (f *FS) chain(c uint32, limit int64) ([]uint32, error) {
	var out []uint32
	for !f.isEOC(c) {
		if c < 2 || c >= f.clusterCount+2 {
			return nil, fmt.Errorf("fat: cluster chain reaches cluster %d outside 2..%d", c, f.clusterCount+1)
		}
		if int64(len(out)) >= limit || len(out) > int(f.clusterCount) {
			return nil, fmt.Errorf("fat: cluster chain longer than %d clusters (loop?)", min(limit, int64(f.clusterCount)))
		}
		out = append(out, c)
		c = f.next(c)
	}
	return out, nil
}

func (f *FS) readChain(c uint32, size int64) ([]byte, error) {
	n := (size + f.clusterSize - 1) / f.clusterSize
	cl, err := f.chain(c, n+1)
	if err != nil {
		return nil, err
	}
	if int64(len(cl)) < n {
		return nil, fmt.Errorf("fat: chain from cluster %d has %d clusters, %d bytes need %d", c, len(cl), size, n)
	}
	out := make([]byte, size)
	for i := int64(0); i < n; i++ {
		off := f.dataStart + int64(cl[i]-2)*f.clusterSize
		end := min((i+1)*f.clusterSize, size)
		if err := readFull(f.r, out[i*f.clusterSize:end], off); err != nil {
			return nil, fmt.Errorf("fat: cluster %d at %#x: %w", cl[i], off, err)
		}
	}
	return out, nil
}

// DirEntry is one directory entry.
type DirEntry struct {
	Name    string // long name if any, else the 8.3 name
	Short   string
	Dir     bool
	Cluster uint32
	Size    int64
}

func (f *FS) readDirData(cluster uint32, root bool) ([]byte, error) {
	if root && f.Type != 32 {
		b := make([]byte, f.rootEntries*32)
		if err := readFull(f.r, b, f.rootDirStart); err != nil {
			return nil, fmt.Errorf("fat: root directory at %#x: %w", f.rootDirStart, err)
		}
		return b, nil
	}
	if cluster == 0 {
		if f.Type != 32 {
			return f.readDirData(0, true)
		}
		cluster = f.rootCluster
	}
	cl, err := f.chain(cluster, maxDirEntries*32/f.clusterSize+1)
	if err != nil {
		return nil, err
	}
	return f.readChain(cluster, int64(len(cl))*f.clusterSize)
}

func parseDir(b []byte) []DirEntry {
	var out []DirEntry
	var lfn []uint16
	var lfnSum byte = 0
	lfnOK := false
	for p := 0; p+32 <= len(b); p += 32 {
		e := b[p : p+32]
		if e[0] == 0 {
			break
		}
		if e[0] == 0xe5 {
			lfnOK = false
			continue
		}
		attr := e[11]
		if attr&0x3f == 0x0f {
			seq := e[0]
			if seq&0x40 != 0 {
				lfn = nil
				lfnOK = true
				lfnSum = e[13]
			} else if e[13] != lfnSum {
				lfnOK = false
			}
			var part []uint16
			for _, r := range [][2]int{{1, 11}, {14, 26}, {28, 32}} {
				for i := r[0]; i < r[1]; i += 2 {
					part = append(part, binary.LittleEndian.Uint16(e[i:]))
				}
			}
			if len(lfn) >= 20*13 {
				// Longer than any long name (255 characters): not one.
				lfnOK = false
				continue
			}
			lfn = append(part, lfn...) // entries come last part first
			continue
		}
		if attr&0x08 != 0 { // volume label
			lfnOK = false
			continue
		}
		short := shortName(e)
		name := short
		if lfnOK && len(lfn) > 0 && checksum(e[:11]) == lfnSum {
			n := 0
			for n < len(lfn) && lfn[n] != 0 && lfn[n] != 0xffff {
				n++
			}
			name = string(utf16.Decode(lfn[:n]))
		}
		lfnOK = false
		lfn = nil
		cl := uint32(binary.LittleEndian.Uint16(e[26:])) | uint32(binary.LittleEndian.Uint16(e[20:]))<<16
		out = append(out, DirEntry{Name: name, Short: short, Dir: attr&0x10 != 0, Cluster: cl, Size: int64(binary.LittleEndian.Uint32(e[28:]))})
	}
	return out
}

func shortName(e []byte) string {
	base := strings.TrimRight(string(e[0:8]), " ")
	if e[0] == 0x05 {
		base = "\xe5" + base[1:]
	}
	ext := strings.TrimRight(string(e[8:11]), " ")
	// NT lowercase flags in byte 12.
	if e[12]&0x08 != 0 {
		base = strings.ToLower(base)
	}
	if e[12]&0x10 != 0 {
		ext = strings.ToLower(ext)
	}
	if ext == "" {
		return base
	}
	return base + "." + ext
}

func checksum(n []byte) byte {
	var s byte
	for _, c := range n {
		s = (s>>1 | s<<7) + c
	}
	return s
}

func (f *FS) lookup(name string) (*DirEntry, error) {
	cur := &DirEntry{Name: "/", Dir: true}
	root := true
	for _, p := range strings.Split(name, "/") {
		if p == "" || p == "." {
			continue
		}
		if !cur.Dir {
			return nil, fmt.Errorf("fat: %s: %s is not a directory", name, cur.Name)
		}
		b, err := f.readDirData(cur.Cluster, root)
		if err != nil {
			return nil, err
		}
		var found *DirEntry
		for _, e := range parseDir(b) {
			if strings.EqualFold(e.Name, p) || strings.EqualFold(e.Short, p) {
				found = &e
				break
			}
		}
		if found == nil {
			return nil, fmt.Errorf("fat: %s: %w", name, fs.ErrNotExist)
		}
		cur = found
		root = p == ".." && cur.Cluster == 0
	}
	return cur, nil
}

// ReadFile returns the contents of the file at name, refusing files larger
// than max (and than MaxFileSize).
func (f *FS) ReadFile(name string, max int64) ([]byte, error) {
	e, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	if e.Dir {
		return nil, fmt.Errorf("fat: %s is a directory", name)
	}
	if e.Size > min(max, MaxFileSize) || e.Size > f.size {
		return nil, fmt.Errorf("fat: %s: %d bytes, more than the %d this reader reads", name, e.Size, min(max, MaxFileSize))
	}
	if e.Size == 0 {
		return []byte{}, nil
	}
	b, err := f.readChain(e.Cluster, e.Size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return b, nil
}

// Stat returns the size of name and whether it is a directory.
func (f *FS) Stat(name string) (size int64, dir bool, err error) {
	e, err := f.lookup(name)
	if err != nil {
		return 0, false, err
	}
	return e.Size, e.Dir, nil
}

// ReadDir returns the entries of directory name ("." and ".." left out).
func (f *FS) ReadDir(name string) ([]DirEntry, error) {
	e, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	if !e.Dir {
		return nil, fmt.Errorf("fat: %s is not a directory", name)
	}
	b, err := f.readDirData(e.Cluster, e.Name == "/")
	if err != nil {
		return nil, err
	}
	var out []DirEntry
	for _, d := range parseDir(b) {
		if d.Name != "." && d.Name != ".." {
			out = append(out, d)
		}
	}
	return out, nil
}

func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}
