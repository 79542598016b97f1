package ovf

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"strings"
)

// MaxManifestSize bounds a .mf file (one line per file of the package).
const MaxManifestSize = 1 << 20

// ErrManifest is wrapped by every manifest mismatch.
var ErrManifest = errors.New("manifest mismatch")

// Manifest is a parsed .mf: for each file name, the algorithm and digest.
type Manifest struct {
	Name    string // the .mf's own name, for errors
	Entries map[string]ManifestEntry
	Order   []string // file names in manifest order
}

// ManifestEntry is one line of a manifest.
type ManifestEntry struct {
	Algo   string // "SHA1", "SHA256" or "SHA512"
	Digest []byte
	Line   int
}

var digestSizes = map[string]int{"SHA1": sha1.Size, "SHA256": sha256.Size, "SHA512": sha512.Size}

func newHash(algo string) hash.Hash {
	switch algo {
	case "SHA1":
		return sha1.New()
	case "SHA512":
		return sha512.New()
	}
	return sha256.New()
}

// ParseManifest reads a manifest: lines "SHA256(file)= hex" as ovftool
// writes them or "SHA256 (file) = hex" as coreutils' sha256sum --tag and
// VirtualBox write them; SHA1, SHA256 and SHA512. Blank lines are skipped.
func ParseManifest(name string, data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, fmt.Errorf("ovf %s: manifest of %d bytes is larger than the %d allowed", name, len(data), MaxManifestSize)
	}
	m := &Manifest{Name: name, Entries: map[string]ManifestEntry{}}
	for i, raw := range bytes.Split(data, []byte("\n")) {
		line := strings.TrimSpace(strings.TrimSuffix(string(raw), "\r"))
		if line == "" {
			continue
		}
		at := fmt.Sprintf("ovf %s: line %d", name, i+1)
		open := strings.IndexByte(line, '(')
		close := strings.LastIndex(line, ")")
		if open < 0 || close < open {
			return nil, fmt.Errorf("%s: %q: want ALGO(file)= digest", at, clip(line))
		}
		algo := strings.ToUpper(strings.TrimSpace(line[:open]))
		size, ok := digestSizes[algo]
		if !ok {
			return nil, fmt.Errorf("%s: algorithm %q: want SHA1, SHA256 or SHA512", at, clip(algo))
		}
		file := line[open+1 : close]
		rest := strings.TrimSpace(line[close+1:])
		rest, ok = strings.CutPrefix(rest, "=")
		if !ok {
			return nil, fmt.Errorf("%s: %q: no '=' after the file name", at, clip(line))
		}
		sum, err := hex.DecodeString(strings.TrimSpace(rest))
		if err != nil || len(sum) != size {
			return nil, fmt.Errorf("%s: %s digest of %q is not %d hex bytes", at, algo, clip(file), size)
		}
		if _, dup := m.Entries[file]; dup {
			return nil, fmt.Errorf("%s: %q is listed twice", at, clip(file))
		}
		m.Entries[file] = ManifestEntry{Algo: algo, Digest: sum, Line: i + 1}
		m.Order = append(m.Order, file)
	}
	return m, nil
}

// Hasher returns a hash for file's algorithm, or nil when the manifest does
// not list it.
func (m *Manifest) Hasher(file string) hash.Hash {
	if m == nil || m.Entries == nil {
		return nil
	}
	e, ok := m.Entries[file]
	if !ok {
		return nil
	}
	return newHash(e.Algo)
}

// Check compares a digest computed by Hasher with the manifest's.
func (m *Manifest) Check(file string, sum []byte) error {
	e := m.Entries[file]
	if !bytes.Equal(e.Digest, sum) {
		return fmt.Errorf("ovf %s: line %d: %w: %s of %q is %x, the manifest says %x",
			m.Name, e.Line, ErrManifest, e.Algo, file, sum, e.Digest)
	}
	return nil
}

// Verify hashes r as file and checks it; files the manifest does not list
// pass, and so does everything when there is no manifest (m is nil).
func (m *Manifest) Verify(file string, r io.Reader) error {
	h := m.Hasher(file)
	if h == nil {
		return nil
	}
	if _, err := io.Copy(h, r); err != nil {
		return fmt.Errorf("ovf %s: hashing %q: %w", m.Name, file, err)
	}
	return m.Check(file, h.Sum(nil))
}

// FormatManifest writes SHA256 lines in ovftool's spelling for the given
// files (name → digest), sorted as given.
func FormatManifest(names []string, sums map[string][]byte) []byte {
	var b bytes.Buffer
	for _, n := range names {
		fmt.Fprintf(&b, "SHA256(%s)= %x\n", n, sums[n])
	}
	return b.Bytes()
}

// sortedNames lists a manifest's files in name order (for messages).
func (m *Manifest) sortedNames() []string {
	out := append([]string(nil), m.Order...)
	sort.Strings(out)
	return out
}
