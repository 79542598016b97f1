// Package vmx reads and writes VMware's .vmx virtual machine configuration
// files and maps them to the neutral VM (formats/neutral).
//
// VMX lives beside formats/vmdk rather than inside it because it is
// configuration text, not a disk format: it describes a whole VM whose disks
// happen to be VMDKs. The package never imports formats/vmdk; the caller
// injects disk opening (Read's openDisk, normally vmdk.Open) and disk writing
// (Write's newDisk, normally a VMDK writer), so the rule that a format package
// never imports another holds.
//
// The syntax follows VMware's own dictionary code (DictLL_UnmarshalLine and
// Escape_Undo in open-vm-tools): one `name = "value"` per line, optional
// unquoted values, `#` comments, values escaped with `|XX` (two hex digits)
// for control characters, `"`, `|` and DEL. Keys are compared without regard
// to case, as VMware does. Files are read as UTF-8 unless .encoding names
// windows-1252, ISO-8859-1 or US-ASCII (converted); other charsets are
// refused with ErrEncoding. Output is always UTF-8.
//
// Mapping to the neutral VM:
//
//   - displayName, numvcpus, cpuid.coresPerSocket, memsize, firmware
//     (bios/efi → "bios"/"uefi"), guestOS (kept verbatim) and uuid.bios
//     (VMware's "56 4d … 64 ea" byte string ⇄ the canonical UUID, same byte
//     order) are the modelled VM keys.
//   - Disks and CD-ROM drives are the present devices on present ide0–1,
//     scsi0–3, sata0–3 and nvme0–3 controllers, in the order VMware's BIOS
//     enumerates them: IDE, SCSI, SATA, NVMe, then controller and unit.
//     A disk's ID is its VMware slot ("scsi0:1"), Bus the controller kind,
//     Unit the controller index times the bus's unit count (ide 2, sata 30,
//     scsi 65, nvme 64) plus the unit. The bootable disk is the first
//     present disk bios.hddOrder names, else the first disk. CD-ROMs are
//     read-only; an ISO that exists is opened, anything else is an empty
//     drive.
//   - NICs are the present ethernetN in index order. The MAC is `address`
//     for addressType "static", `generatedAddress` for "generated"/"vpx",
//     kept exactly (lower-case); virtualDev is the model, networkName the
//     network.
//   - Every other key goes verbatim into Extensions.VMware, as do modelled
//     keys whose spelling the writer would not reproduce (memSize, an
//     upper-case UUID or MAC); OrderKey records the source's key
//     order. Writing uses an extension's spelling whenever it means what the
//     neutral field says, so VMX → neutral → VMX gives back the same keys,
//     values and order.
//
// Writing a VM that came from elsewhere adds what VMware needs: .encoding,
// config.version "8", virtualHW.version (14 unless told), a controller per
// bus used (disks from buses VMware lacks go to an LSI Logic scsi0, CD-ROMs
// to sata0), guestOS from the hint ("other-64" when nothing fits), nvram for
// UEFI, and NICs with addressType "static" — the only way to keep a foreign
// MAC. VMware accepts static MACs only in 00:50:56:00:00:00–3F:FF:FF;
// outside it we write checkMACAddress = "FALSE", which Workstation and
// standalone ESXi honour, but a vCenter-managed host may still refuse or
// replace such a MAC.
package vmx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// MaxFileSize bounds what Parse reads; real .vmx files are a few KiB.
const MaxFileSize = 4 << 20

// Errors callers may test for with errors.Is.
var (
	ErrTooLarge     = errors.New("file larger than 4 MiB")
	ErrDuplicateKey = errors.New("duplicate key")
	ErrSyntax       = errors.New("syntax error")
	ErrEncoding     = errors.New("unsupported encoding")
	ErrNotVMX       = errors.New("not a .vmx file")
)

// Entry is one key/value pair of a file.
type Entry struct {
	Key   string // as spelled in the file
	Value string // unescaped, UTF-8
	Line  int    // 1-based source line; 0 when set by the program
}

// File is a parsed .vmx: its entries in file order, plus the comment and
// blank lines between them so that Marshal gives back a VMware-written file
// byte for byte.
type File struct {
	// Name is used in error messages.
	Name string
	// Encoding is the .encoding the source declared ("" when it had none).
	// Values are always held, and written, as UTF-8.
	Encoding string

	items []item
	index map[string]int // lower-case key → position in items
}

type item struct {
	Entry
	raw     string // verbatim comment or blank line when Key == ""
	deleted bool
}

// NewFile returns an empty file.
func NewFile(name string) *File {
	return &File{Name: name, index: map[string]int{}}
}

// Get returns the value of key, compared without regard to case.
func (f *File) Get(key string) (string, bool) {
	i, ok := f.index[strings.ToLower(key)]
	if !ok {
		return "", false
	}
	return f.items[i].Value, true
}

// Line returns the source line of key, 0 if it is absent or was set later.
func (f *File) Line(key string) int {
	i, ok := f.index[strings.ToLower(key)]
	if !ok {
		return 0
	}
	return f.items[i].Line
}

// Set replaces the value of key in place (keeping its position and
// spelling) or appends it.
func (f *File) Set(key, value string) {
	if f.index == nil {
		f.index = map[string]int{}
	}
	lk := strings.ToLower(key)
	if i, ok := f.index[lk]; ok {
		f.items[i].Value = value
		return
	}
	f.index[lk] = len(f.items)
	f.items = append(f.items, item{Entry: Entry{Key: key, Value: value}})
}

// Delete removes key.
func (f *File) Delete(key string) {
	lk := strings.ToLower(key)
	if i, ok := f.index[lk]; ok {
		f.items[i].deleted = true
		delete(f.index, lk)
	}
}

// Entries returns the key/value pairs in file order.
func (f *File) Entries() []Entry {
	out := make([]Entry, 0, len(f.index))
	for _, it := range f.items {
		if it.Key != "" && !it.deleted {
			out = append(out, it.Entry)
		}
	}
	return out
}

// Len is the number of keys.
func (f *File) Len() int { return len(f.index) }

// Marshal renders the file as VMware writes it: `key = "value"` lines with
// VMware's escaping, LF line ends, comment lines where they were. The text is
// UTF-8; a source declared in another charset gets `.encoding = "UTF-8"`.
func (f *File) Marshal() []byte {
	var b bytes.Buffer
	for _, it := range f.items {
		switch {
		case it.deleted:
		case it.Key == "":
			b.WriteString(it.raw)
			b.WriteByte('\n')
		default:
			b.WriteString(it.Key)
			b.WriteString(` = "`)
			b.WriteString(Escape(it.Value))
			b.WriteString("\"\n")
		}
	}
	return b.Bytes()
}

// Escape applies VMware's value escaping: control characters other than tab,
// `"`, `|` and DEL become `|XX` with upper-case hex digits.
func Escape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 0x20 && c != '\t') || c == '"' || c == '|' || c == 0x7f {
			b.WriteByte('|')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Unescape undoes `|XX` escapes exactly as VMware's Escape_Undo does: a `|`
// not followed by two hex digits is kept literally, and the byte after a
// failed escape does not start a new one.
func Unescape(s string) string {
	if strings.IndexByte(s, '|') < 0 {
		return s
	}
	var b strings.Builder
	state, h := 0, 0
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch state {
		case 0:
			if c == '|' {
				state = 1
			}
		case 1:
			h = hexVal(c)
			if h >= 0 {
				state = 2
			} else {
				state = 0
			}
		case 2:
			if l := hexVal(c); l >= 0 {
				b.WriteString(s[start : i-2])
				b.WriteByte(byte(h<<4 | l))
				start = i + 1
			}
			state = 0
		}
	}
	b.WriteString(s[start:])
	return b.String()
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

const utf8BOM = "\xef\xbb\xbf"

// Parse reads a .vmx file. name is used in error messages. Duplicate keys
// (compared without regard to case), malformed lines, unknown encodings and
// files over MaxFileSize are errors naming the file and line.
func Parse(r io.Reader, name string) (*File, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("vmx %s: %w", name, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("vmx %s: %w", name, ErrTooLarge)
	}
	return parseBytes(data, name)
}

func parseBytes(data []byte, name string) (*File, error) {
	if looksLikeVMDK(data) {
		return nil, fmt.Errorf("vmx %s: %w: it is a VMDK disk", name, ErrNotVMX)
	}
	data = bytes.TrimPrefix(data, []byte(utf8BOM))
	f := NewFile(name)
	text := string(data)
	lineNo := 0
	for len(text) > 0 {
		var ln string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			ln, text = text[:i], text[i+1:]
		} else {
			ln, text = text, ""
		}
		lineNo++
		ln = strings.TrimSuffix(ln, "\r")
		key, val, isEntry, err := parseLine(ln)
		if err != nil {
			return nil, fmt.Errorf("vmx %s: line %d: %w", name, lineNo, err)
		}
		if !isEntry {
			f.items = append(f.items, item{raw: ln, Entry: Entry{Line: lineNo}})
			continue
		}
		lk := strings.ToLower(key)
		if prev, dup := f.index[lk]; dup {
			return nil, fmt.Errorf("vmx %s: line %d: %w %q (first set on line %d as %q)",
				name, lineNo, ErrDuplicateKey, key, f.items[prev].Line, f.items[prev].Key)
		}
		f.index[lk] = len(f.items)
		f.items = append(f.items, item{Entry: Entry{Key: key, Value: Unescape(val), Line: lineNo}})
	}
	if err := f.decode(); err != nil {
		return nil, err
	}
	return f, nil
}

func looksLikeVMDK(data []byte) bool {
	return bytes.HasPrefix(data, []byte("KDMV")) || bytes.HasPrefix(data, []byte("COWD")) ||
		bytes.HasPrefix(data, []byte("# Disk DescriptorFile"))
}

// parseLine splits one line following DictLL_UnmarshalLine:
//
//	<ws> name <ws> = <ws> "quoted value" <ws> [# comment]
//	<ws> name <ws> = <ws> value <ws> [# comment]
//	<ws> [# comment]
//
// A name holds no whitespace, '=' or '#'; an unquoted value no whitespace or
// '#'. Where VMware would keep a malformed line aside, we refuse it.
func parseLine(ln string) (key, val string, isEntry bool, err error) {
	if strings.IndexByte(ln, 0) >= 0 {
		return "", "", false, fmt.Errorf("%w: NUL byte", ErrSyntax)
	}
	s := strings.TrimLeft(ln, " \t")
	if s == "" || s[0] == '#' {
		return "", "", false, nil
	}
	n := strings.IndexAny(s, " \t=#")
	if n < 0 {
		return "", "", false, fmt.Errorf("%w: %q has no '='", ErrSyntax, clip(s))
	}
	key, s = s[:n], strings.TrimLeft(s[n:], " \t")
	if n == 0 || s == "" || s[0] != '=' {
		return "", "", false, fmt.Errorf("%w: expected 'name = \"value\"', got %q", ErrSyntax, clip(ln))
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return "", "", false, fmt.Errorf("%w: key %q has a byte outside printable ASCII", ErrSyntax, clip(key))
		}
	}
	s = strings.TrimLeft(s[1:], " \t")
	if strings.HasPrefix(s, `"`) {
		end := strings.IndexByte(s[1:], '"')
		if end < 0 {
			return "", "", false, fmt.Errorf("%w: unterminated quoted value of %q", ErrSyntax, key)
		}
		val, s = s[1:1+end], s[2+end:]
	} else {
		end := strings.IndexAny(s, " \t#")
		if end < 0 {
			end = len(s)
		}
		val, s = s[:end], s[end:]
	}
	s = strings.TrimLeft(s, " \t")
	if s != "" && s[0] != '#' {
		return "", "", false, fmt.Errorf("%w: unexpected %q after the value of %q", ErrSyntax, clip(s), key)
	}
	return key, val, true, nil
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// decode converts values (and comment lines) from the declared .encoding to
// UTF-8, and checks that a UTF-8 file is valid UTF-8.
func (f *File) decode() error {
	enc, ok := f.Get(".encoding")
	if ok {
		f.Encoding = enc
	}
	dec, err := charsetDecoder(enc)
	if err != nil {
		return fmt.Errorf("vmx %s: line %d: .encoding %q: %w", f.Name, f.Line(".encoding"), enc, err)
	}
	for i := range f.items {
		it := &f.items[i]
		if dec == nil {
			if !utf8.ValidString(it.Value) || !utf8.ValidString(it.raw) {
				what := "comment"
				if it.Key != "" {
					what = "value of " + it.Key
				}
				return fmt.Errorf("vmx %s: line %d: %s is not valid UTF-8 (the file declares no other .encoding)",
					f.Name, it.Line, what)
			}
			continue
		}
		it.Value = dec(it.Value)
		it.raw = dec(it.raw)
	}
	if dec != nil {
		f.Set(".encoding", "UTF-8")
	}
	return nil
}

// charsetDecoder returns nil for UTF-8 (no conversion), a byte-to-UTF-8
// converter for the single-byte charsets VMware hosts declare, or
// ErrEncoding.
func charsetDecoder(name string) (func(string) string, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "", "utf-8", "utf8":
		return nil, nil
	case "windows-1252", "cp1252", "windows1252", "x-cp1252":
		return decodeSingleByte(&cp1252High), nil
	case "iso-8859-1", "iso8859-1", "latin1", "iso_8859-1", "l1":
		return decodeSingleByte(nil), nil
	case "us-ascii", "ascii", "ansi_x3.4-1968":
		return decodeSingleByte(nil), nil
	}
	return nil, fmt.Errorf("%w (supported: UTF-8, windows-1252, ISO-8859-1, US-ASCII); convert the file to UTF-8 first", ErrEncoding)
}

// cp1252High maps windows-1252 bytes 0x80–0x9F; the five bytes Windows leaves
// undefined map to the C1 control of the same number, as WHATWG does.
var cp1252High = [32]rune{
	0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
	0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
}

func decodeSingleByte(high *[32]rune) func(string) string {
	return func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case c < 0x80:
				b.WriteByte(c)
			case c < 0xa0 && high != nil:
				b.WriteRune(high[c-0x80])
			default:
				b.WriteRune(rune(c))
			}
		}
		return b.String()
	}
}

// Detect reports whether head (the first bytes of a file) looks like a .vmx:
// well-formed dictionary lines up to one of the keys every VMware product
// writes (.encoding, config.version, virtualHW.version).
func Detect(head []byte) bool {
	if looksLikeVMDK(head) {
		return false
	}
	text := string(bytes.TrimPrefix(head, []byte(utf8BOM)))
	for len(text) > 0 {
		i := strings.IndexByte(text, '\n')
		if i < 0 {
			// A cut line at the end of head still tells its key.
			i = len(text)
		}
		ln := strings.TrimSuffix(text[:i], "\r")
		text = text[min(i+1, len(text)):]
		key, _, isEntry, err := parseLine(ln)
		if err != nil {
			// The last, possibly truncated line may fail on its value.
			if len(text) == 0 {
				key = cutKey(ln)
				isEntry = key != ""
			} else {
				return false
			}
		}
		if !isEntry {
			continue
		}
		switch strings.ToLower(key) {
		case ".encoding", "config.version", "virtualhw.version":
			return true
		}
	}
	return false
}

func cutKey(ln string) string {
	s := strings.TrimLeft(ln, " \t")
	n := strings.IndexAny(s, " \t=")
	if n <= 0 || !strings.HasPrefix(strings.TrimLeft(s[n:], " \t"), "=") {
		return ""
	}
	return s[:n]
}
