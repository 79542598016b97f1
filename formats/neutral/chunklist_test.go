package neutral

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/disk"
)

// sampleList is a 5.5-chunk disk: data, zero, zero, data, zero, half-chunk data.
func sampleList() *chunkList {
	l := &chunkList{ID: "disk0", VirtualSize: 5*ChunkSize + ChunkSize/2, Store: "chunks"}
	for _, i := range []int64{0, 3, 5} {
		l.data = append(l.data, dataChunk{index: i, sum: sha256.Sum256([]byte{byte(i)})})
	}
	l.Digest = l.computeDigest()
	return l
}

func encodeList(t testing.TB, l *chunkList) string {
	var b bytes.Buffer
	require.NoError(t, l.encode(&b))
	return b.String()
}

func TestChunkListEncoding(t *testing.T) {
	l := sampleList()
	text := encodeList(t, l)
	h := func(i byte) string { s := sha256.Sum256([]byte{i}); return hex.EncodeToString(s[:]) }
	assert.Contains(t, text, "\"chunks\": [\n    \""+h(0)+"\",\n    2,\n    \""+h(3)+"\",\n    1,\n    \""+h(5)+"\"\n  ]\n}\n")
	got, err := parseChunkList(strings.NewReader(text))
	require.NoError(t, err)
	assert.Equal(t, l, got)

	// The digest is disk.Digest's, from hashes alone (the non-empty case is
	// checked against disk.Digest in TestBundleRoundTrip).
	content := make([]byte, l.VirtualSize)
	empty := &chunkList{ID: "e", VirtualSize: l.VirtualSize, Store: "chunks"}
	want, err := disk.Digest(context.Background(), disk.FromReaderAt(bytes.NewReader(content), l.VirtualSize), disk.CopyOptions{})
	require.NoError(t, err)
	assert.Equal(t, want, empty.computeDigest())

	// Empty disk, all-zero disk.
	for _, size := range []int64{0, 3 * ChunkSize} {
		e := &chunkList{ID: "e", VirtualSize: size, Store: "chunks"}
		e.Digest = e.computeDigest()
		got, err := parseChunkList(strings.NewReader(encodeList(t, e)))
		require.NoError(t, err)
		assert.Equal(t, e, got)
	}
}

func TestChunkListErrors(t *testing.T) {
	l := sampleList()
	good := encodeList(t, l)
	h3 := hex.EncodeToString(l.data[1].sum[:])
	cases := []struct {
		name      string
		old, new_ string
		want      string
	}{
		{"count vs size", `"chunk_count": 6`, `"chunk_count": 7`, "chunk_count: 7 does not match virtual_size 5767168 (6 chunks"},
		{"size vs list", `"virtual_size": 5767168`, `"virtual_size": 7340032`, "chunk_count: 6 does not match virtual_size 7340032"},
		{"too few entries", "    1,\n", "", "chunks: lists 5 chunks, chunk_count is 6"},
		{"too many entries", "    2,\n", "    3,\n", "chunks: lists 7 chunks, chunk_count is 6"},
		{"upper-case hash", h3, strings.ToUpper(h3), `chunks: chunk 3: "` + strings.ToUpper(h3)[:20]},
		{"short hash", h3, h3[:63], "chunks: chunk 3: \"" + h3[:63] + "\" is not a SHA-256"},
		{"non-hex hash", h3, "zz" + h3[2:], "chunks: chunk 3"},
		{"null entry", "    2,\n", "    null,\n", "chunks: chunk 1: expected a SHA-256 string or a zero-run count, found <nil>"},
		{"zero run 0", "    2,\n", "    0,\n", "chunks: chunk 1: zero run 0 is not a positive integer"},
		{"negative run", "    2,\n", "    -2,\n", "zero run -2 is not a positive integer"},
		{"float run", "    2,\n", "    2.5,\n", "zero run 2.5 is not a positive integer"},
		{"huge run", "    2,\n", "    9223372036854775807,\n", "chunks: more than 67108864 chunks"},
		{"overflow run", "    2,\n", "    99999999999999999999999,\n", "is not a positive integer"},
		{"chunk size", `"chunk_size": 1048576`, `"chunk_size": 4096`, "chunk_size: 4096 is not supported (only 1048576)"},
		{"absurd size", `"virtual_size": 5767168`, `"virtual_size": 1152921504606846976`, "virtual_size: 1152921504606846976 is larger than the limit"},
		{"negative size", `"virtual_size": 5767168`, `"virtual_size": -1`, "virtual_size: -1 is not a non-negative integer"},
		{"digest mismatch", l.Digest, strings.Repeat("0", 64), "digest: 0000000000000000000000000000000000000000000000000000000000000000 does not match the chunk list"},
		{"digest malformed", l.Digest, "xyz", `digest: "xyz" is not 64 lower-case hex digits`},
		{"compression", `"zstd"`, `"gzip"`, `compression: "gzip" is not supported`},
		{"schema", `"schema": 1`, `"schema": 2`, "schema: 2 is not supported"},
		{"id traversal", `"id": "disk0"`, `"id": "../x"`, `id: "../x" is not a valid disk id`},
		{"empty store", `"store": "chunks"`, `"store": ""`, "store: empty"},
		{"missing field", `"compression": "zstd",`, ``, "compression: missing"},
		{"duplicate field", `"store": "chunks",`, `"store": "chunks", "store": "x",`, "store: appears twice"},
		{"unknown field", `"store": "chunks",`, `"store": "chunks", "extra": 1,`, `unknown field "extra"`},
		{"string size", `"virtual_size": 5767168`, `"virtual_size": "5767168"`, "virtual_size: expected an integer"},
		{"chunks object", `"chunks": [`, `"chunks": {"a": [`, "chunks: expected an array"},
		{"trailing", "}\n", "} {}", "unexpected data after the JSON object"},
		{"truncated", "  ]\n}\n", "  ", "truncated JSON"},
		{"syntax", `"chunks": [`, `"chunks": [,`, "invalid JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Contains(t, good, tc.old)
			bad := strings.Replace(good, tc.old, tc.new_, 1)
			_, err := parseChunkList(strings.NewReader(bad))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	for _, doc := range []string{"", "[]", "null", "{", `{"chunks": [`, "\"x\""} {
		_, err := parseChunkList(strings.NewReader(doc))
		assert.Error(t, err, "%q", doc)
	}
}

// A bundle whose files disagree with each other or are missing.
func TestOpenBundleErrors(t *testing.T) {
	dir := t.TempDir()
	content := testContent(3, 4*ChunkSize+100)
	content[0] = 1
	vm := testVM(
		Disk{ID: "sda", Device: "disk", Bus: "sata", Image: disk.FromReaderAt(bytes.NewReader(content), int64(len(content)))},
		Disk{ID: "cd", Device: "cdrom", Bus: "sata", Unit: 1, Image: disk.FromReaderAt(bytes.NewReader(content[:ChunkSize]), ChunkSize)},
	)
	path := filepath.Join(dir, "x.vmb")
	writeTestBundle(t, path, vm, BundleOptions{})
	vmJSON, err := os.ReadFile(filepath.Join(path, "vm.json"))
	require.NoError(t, err)
	listPath := filepath.Join(path, "disks", "sda.json")
	list, err := os.ReadFile(listPath)
	require.NoError(t, err)
	otherDigest := strings.Repeat("1", 64)

	cases := []struct {
		name  string
		setup func(t *testing.T)
		want  string
	}{
		{"vm.json missing", func(t *testing.T) { os.Remove(filepath.Join(path, "vm.json")) }, "vm.json: no such file"},
		{"vm.json bad bus", func(t *testing.T) {
			os.WriteFile(filepath.Join(path, "vm.json"), bytes.Replace(vmJSON, []byte(`"sata"`), []byte(`"usb"`), 1), 0o644)
		}, `vm.json: disks[0].bus: "usb" is not one of`},
		{"vm.json traversal id", func(t *testing.T) {
			os.WriteFile(filepath.Join(path, "vm.json"), bytes.Replace(vmJSON, []byte(`"sda"`), []byte(`"../sda"`), 1), 0o644)
		}, `disks[0].id: "../sda" is not a valid disk id`},
		{"list missing", func(t *testing.T) { os.Remove(listPath) }, "disks[0] (sda): open " + listPath + ": no such file"},
		{"capacity mismatch", func(t *testing.T) {
			os.WriteFile(filepath.Join(path, "vm.json"), bytes.Replace(vmJSON, []byte(`"capacity_bytes": 4194404`), []byte(`"capacity_bytes": 4194405`), 1), 0o644)
		}, "virtual_size 4194404 does not match vm.json's capacity_bytes 4194405"},
		{"digest mismatch", func(t *testing.T) {
			var m map[string]any
			require.NoError(t, jsonUnmarshal(vmJSON, &m))
			m["disks"].([]any)[0].(map[string]any)["digest"] = otherDigest
			os.WriteFile(filepath.Join(path, "vm.json"), jsonMarshal(t, m), 0o644)
		}, "does not match vm.json's " + otherDigest},
		{"id mismatch", func(t *testing.T) {
			os.WriteFile(listPath, bytes.Replace(list, []byte(`"id": "sda"`), []byte(`"id": "sdb"`), 1), 0o644)
		}, `sda.json: id "sdb" does not match vm.json's "sda"`},
		{"list too big", func(t *testing.T) {
			os.WriteFile(listPath, append(bytes.Clone(list), bytes.Repeat([]byte(" "), 1<<20)...), 0o644)
		}, "more than a chunk list for 4194404 bytes needs"},
		{"list bad hash", func(t *testing.T) {
			i := bytes.Index(list, []byte(`"chunks": [`))
			bad := bytes.Clone(list)
			bad = append(bad[:i], bytes.Replace(list[i:], []byte("\",\n"), []byte("x\",\n"), 1)...)
			os.WriteFile(listPath, bad, 0o644)
		}, "sda.json: chunks: chunk 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup(t)
			defer func() {
				require.NoError(t, os.WriteFile(filepath.Join(path, "vm.json"), vmJSON, 0o644))
				require.NoError(t, os.WriteFile(listPath, list, 0o644))
			}()
			_, err := OpenBundle(path)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.True(t, strings.HasPrefix(err.Error(), "bundle "+path+": "), err.Error())
		})
	}

	// A CD-ROM without a chunk list is an empty drive; a disk is not.
	require.NoError(t, os.Remove(filepath.Join(path, "disks", "cd.json")))
	got, err := OpenBundle(path)
	require.NoError(t, err)
	assert.Nil(t, got.Disks[1].Image)
	assert.NotNil(t, got.Disks[0].Image)
	got.Close()
}

func TestWriteBundleErrors(t *testing.T) {
	dir := t.TempDir()
	img := disk.FromReaderAt(bytes.NewReader(make([]byte, 100)), 100)
	cases := []struct {
		name string
		vm   *VM
		want string
	}{
		{"no image", testVM(Disk{ID: "a", Device: "disk", Bus: "scsi"}), "disks[0] (a): no content to write"},
		{"capacity", testVM(Disk{ID: "a", Device: "disk", Bus: "scsi", CapacityBytes: 99, Image: img}), "capacity_bytes 99 differs from the image size 100"},
		{"invalid", testVM(Disk{ID: "../a", Device: "disk", Bus: "scsi", Image: img}), `disks[0].id: "../a" is not a valid disk id`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := disk.NewOutput(false)
			defer out.Abort()
			err := WriteBundle(context.Background(), out, filepath.Join(dir, "x.vmb"), tc.vm, BundleOptions{})
			assert.ErrorContains(t, err, tc.want)
		})
	}
	// Nothing left behind.
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries)

	// A failing source leaves no bundle after Abort.
	out := disk.NewOutput(false)
	err = WriteBundle(context.Background(), out, filepath.Join(dir, "y.vmb"),
		testVM(Disk{ID: "a", Device: "disk", Bus: "scsi", Image: disk.FromReaderAt(failingReader{}, 10*ChunkSize)}), BundleOptions{})
	assert.ErrorContains(t, err, "bundle "+filepath.Join(dir, "y.vmb")+": disk a: ")
	out.Abort()
	entries, err = os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

type failingReader struct{}

func (failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= 3*ChunkSize {
		return 0, os.ErrPermission
	}
	for i := range p {
		p[i] = byte(off) + byte(i)
	}
	return len(p), nil
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func jsonMarshal(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}
