package neutral

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/vmconv/vmconv/disk"
)

// A chunk list, disks/<id>.json, describes one disk of a bundle:
//
//	{
//	  "schema": 1,
//	  "id": "disk0",
//	  "virtual_size": 10737418240,
//	  "chunk_size": 1048576,
//	  "chunk_count": 10240,
//	  "compression": "zstd",
//	  "store": "chunks",
//	  "digest": "<64 hex>",
//	  "chunks": [
//	    "<sha256 hex of chunk 0>",
//	    37,
//	    "<sha256 hex of chunk 38>",
//	    ...
//	  ]
//	}
//
// "chunks" holds one entry per chunk in order: a string is the SHA-256 (64
// lower-case hex digits) of the chunk's uncompressed bytes, which names its
// payload in the store; a positive integer n stands for n consecutive all-zero
// chunks, which have no payload. Run lengths keep a 2 TB sparse disk's list a
// few bytes long. "store" is the chunk directory, relative to the bundle
// directory unless absolute, or a blob store's URL (s3://BUCKET/PREFIX?…,
// file:///DIR; store_blob.go), which readers open as recorded unless told
// another store (OpenBundleStore, --store). "digest" is the disk's content digest (see
// disk.Digest) and must match the one computed from the list.

// ChunkSize is the bundle's chunk size, the one the digest is defined over.
const ChunkSize = disk.ChunkSize

// maxChunks bounds a list's chunk count (MaxDiskSize / ChunkSize).
const maxChunks = MaxDiskSize / ChunkSize

type dataChunk struct {
	index int64
	sum   [32]byte
}

// chunkList is a parsed disks/<id>.json. Only data chunks are held in memory,
// sorted by index; the rest are zero.
type chunkList struct {
	ID          string
	VirtualSize int64
	Store       string
	Digest      string
	data        []dataChunk
}

// count returns the number of chunks of a disk of the given size.
func chunkCount(size int64) int64 { return (size + ChunkSize - 1) / ChunkSize }

// chunkLen returns the length of chunk i of a disk of the given size.
func chunkLen(size, i int64) int {
	if rem := size - i*ChunkSize; rem < ChunkSize {
		return int(rem)
	}
	return ChunkSize
}

// computeDigest returns the content digest of the disk the list describes.
func (l *chunkList) computeDigest() string {
	d := disk.NewDigestHasher(l.VirtualSize)
	for i := range l.data {
		d.Add(l.data[i].index*ChunkSize, l.data[i].sum)
	}
	return d.Sum()
}

// encode writes the list as JSON, one chunk entry per line.
func (l *chunkList) encode(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	head := struct {
		Schema      int    `json:"schema"`
		ID          string `json:"id"`
		VirtualSize int64  `json:"virtual_size"`
		ChunkSize   int    `json:"chunk_size"`
		ChunkCount  int64  `json:"chunk_count"`
		Compression string `json:"compression"`
		Store       string `json:"store"`
		Digest      string `json:"digest"`
	}{Schema, l.ID, l.VirtualSize, ChunkSize, chunkCount(l.VirtualSize), "zstd", l.Store, l.Digest}
	hb, err := json.MarshalIndent(head, "", "  ")
	if err != nil {
		return err
	}
	bw.Write(hb[:len(hb)-2]) // drop "\n}"
	bw.WriteString(",\n  \"chunks\": [")
	var line [64 + 8]byte
	sep := "\n    "
	next := int64(0)
	emitZeros := func(upTo int64) {
		if upTo > next {
			bw.WriteString(sep)
			bw.WriteString(strconv.FormatInt(upTo-next, 10))
			sep = ",\n    "
		}
	}
	for i := range l.data {
		emitZeros(l.data[i].index)
		bw.WriteString(sep)
		b := append(line[:0], '"')
		b = hex.AppendEncode(b, l.data[i].sum[:])
		b = append(b, '"')
		bw.Write(b)
		sep = ",\n    "
		next = l.data[i].index + 1
	}
	emitZeros(chunkCount(l.VirtualSize))
	if sep == "\n    " {
		bw.WriteString("]\n}\n")
	} else {
		bw.WriteString("\n  ]\n}\n")
	}
	return bw.Flush()
}

// chunkListError is a problem in a chunk list, naming the field.
type chunkListError struct {
	field string
	msg   string
}

func (e *chunkListError) Error() string { return e.field + ": " + e.msg }

func listErr(field, format string, args ...any) error {
	return &chunkListError{field, fmt.Sprintf(format, args...)}
}

// parseChunkList reads a disks/<id>.json. The reader is consumed as a stream:
// memory grows with the data chunks actually listed (each costs at least 66
// bytes of input), never with a size the file claims.
func parseChunkList(r io.Reader) (*chunkList, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	dec.UseNumber()
	where := func() string { return fmt.Sprintf("offset %d", dec.InputOffset()) }
	tok, err := dec.Token()
	if err != nil {
		return nil, listSyntax(err, where())
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("%s: expected a JSON object", where())
	}
	var (
		l                                 chunkList
		schema, chunkSize, chunkCnt, size int64
		seen                              = map[string]bool{}
		listed                            int64 // chunk entries consumed
		compression                       string
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, listSyntax(err, where())
		}
		key, _ := tok.(string)
		if seen[key] {
			return nil, listErr(key, "appears twice")
		}
		seen[key] = true
		switch key {
		case "schema", "virtual_size", "chunk_size", "chunk_count":
			tok, err := dec.Token()
			if err != nil {
				return nil, listSyntax(err, where())
			}
			n, ok := tok.(json.Number)
			if !ok {
				return nil, listErr(key, "expected an integer, found %v", tok)
			}
			v, err := strconv.ParseInt(string(n), 10, 64)
			if err != nil || v < 0 {
				return nil, listErr(key, "%s is not a non-negative integer", n)
			}
			switch key {
			case "schema":
				schema = v
			case "virtual_size":
				size = v
			case "chunk_size":
				chunkSize = v
			case "chunk_count":
				chunkCnt = v
			}
		case "id", "compression", "store", "digest":
			var s string
			if err := dec.Decode(&s); err != nil {
				return nil, listErr(key, "expected a string: %v", jsonErrorText(nil, err))
			}
			switch key {
			case "id":
				l.ID = s
			case "compression":
				compression = s
			case "store":
				l.Store = s
			case "digest":
				l.Digest = s
			}
		case "chunks":
			if listed, err = parseEntries(dec, &l); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%s: unknown field %q", where(), key)
		}
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return nil, listSyntax(err, where())
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: unexpected data after the JSON object", where())
	}
	for _, k := range []string{"schema", "id", "virtual_size", "chunk_size", "chunk_count", "compression", "store", "digest", "chunks"} {
		if !seen[k] {
			return nil, listErr(k, "missing")
		}
	}
	switch {
	case schema != Schema:
		return nil, listErr("schema", "%d is not supported (this version reads schema %d)", schema, Schema)
	case !ValidDiskID(l.ID):
		return nil, listErr("id", "%q is not a valid disk id", l.ID)
	case size > MaxDiskSize:
		return nil, listErr("virtual_size", "%d is larger than the limit of %d", size, int64(MaxDiskSize))
	case chunkSize != ChunkSize:
		return nil, listErr("chunk_size", "%d is not supported (only %d)", chunkSize, ChunkSize)
	case compression != "zstd":
		return nil, listErr("compression", "%q is not supported (only \"zstd\")", compression)
	case l.Store == "":
		return nil, listErr("store", "empty")
	case !digestRe.MatchString(l.Digest):
		return nil, listErr("digest", "%q is not 64 lower-case hex digits", l.Digest)
	}
	l.VirtualSize = size
	if want := chunkCount(size); chunkCnt != want {
		return nil, listErr("chunk_count", "%d does not match virtual_size %d (%d chunks of %d bytes)", chunkCnt, size, want, ChunkSize)
	}
	if listed != chunkCnt {
		return nil, listErr("chunks", "lists %d chunks, chunk_count is %d", listed, chunkCnt)
	}
	if got := l.computeDigest(); got != l.Digest {
		return nil, listErr("digest", "%s does not match the chunk list (its digest is %s)", l.Digest, got)
	}
	return &l, nil
}

func parseEntries(dec *json.Decoder, l *chunkList) (int64, error) {
	tok, err := dec.Token()
	if err != nil {
		return 0, listSyntax(err, fmt.Sprintf("offset %d", dec.InputOffset()))
	}
	if tok != json.Delim('[') {
		return 0, listErr("chunks", "expected an array")
	}
	var next int64
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return 0, listSyntax(err, fmt.Sprintf("offset %d", dec.InputOffset()))
		}
		switch v := tok.(type) {
		case string:
			var d dataChunk
			if !isLowerHex64(v) {
				return 0, listErr(fmt.Sprintf("chunks: chunk %d", next), "%q is not a SHA-256 (64 lower-case hex digits)", truncate(v, 80))
			}
			hex.Decode(d.sum[:], []byte(v))
			if next >= maxChunks {
				return 0, listErr("chunks", "more than %d chunks", int64(maxChunks))
			}
			d.index = next
			l.data = append(l.data, d)
			next++
		case json.Number:
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || n < 1 {
				return 0, listErr(fmt.Sprintf("chunks: chunk %d", next), "zero run %s is not a positive integer", truncate(string(v), 40))
			}
			if n > maxChunks-next {
				return 0, listErr("chunks", "more than %d chunks", int64(maxChunks))
			}
			next += n
		default:
			return 0, listErr(fmt.Sprintf("chunks: chunk %d", next), "expected a SHA-256 string or a zero-run count, found %v", tok)
		}
	}
	if _, err := dec.Token(); err != nil { // ']'
		return 0, listSyntax(err, fmt.Sprintf("offset %d", dec.InputOffset()))
	}
	return next, nil
}

func listSyntax(err error, where string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: truncated JSON", where)
	}
	return fmt.Errorf("%s: invalid JSON: %v", where, err)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// isLowerHex64 reports whether s is 64 lower-case hex digits (a SHA-256).
func isLowerHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
