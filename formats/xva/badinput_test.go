package xva

import (
	"archive/tar"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type tentry struct {
	name string
	data []byte
	typ  byte
	size int64 // header size when not len(data) (for lies)
}

func buildTar(t testing.TB, ents []tentry) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Size: int64(len(e.data)), Format: tar.FormatGNU}
		if typ == tar.TypeSymlink {
			h.Linkname, h.Size = "/etc/passwd", 0
		}
		if typ == tar.TypeDir {
			h.Size = 0
		}
		require.NoError(t, tw.WriteHeader(h))
		if h.Size > 0 {
			_, err := tw.Write(e.data)
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	return b.Bytes()
}

// ovaXML is a minimal export of one VM with one disk per VDI size given.
func ovaXML(sizes map[string]string, extraVM string) []byte {
	var objs strings.Builder
	var vbds []string
	i := 0
	for ref, size := range sizes {
		vbd := fmt.Sprintf("Ref:vbd%d", i)
		vbds = append(vbds, "<value>"+vbd+"</value>")
		fmt.Fprintf(&objs, `<value><struct><member><name>class</name><value>VBD</value></member><member><name>id</name><value>%s</value></member><member><name>snapshot</name><value><struct><member><name>VM</name><value>Ref:vm</value></member><member><name>VDI</name><value>%s</value></member><member><name>userdevice</name><value>%d</value></member><member><name>type</name><value>Disk</value></member><member><name>mode</name><value>RW</value></member><member><name>bootable</name><value><boolean>1</boolean></value></member></struct></value></member></struct></value>`, vbd, ref, i)
		if size != "" {
			fmt.Fprintf(&objs, `<value><struct><member><name>class</name><value>VDI</value></member><member><name>id</name><value>%s</value></member><member><name>snapshot</name><value><struct><member><name>name_label</name><value>disk %d</value></member><member><name>virtual_size</name><value>%s</value></member></struct></value></member></struct></value>`, ref, i, size)
		}
		i++
	}
	return []byte(`<value><struct><member><name>version</name><value><struct><member><name>export_vsn</name><value>2</value></member></struct></value></member><member><name>objects</name><value><array><data>` +
		`<value><struct><member><name>class</name><value>VM</value></member><member><name>id</name><value>Ref:vm</value></member><member><name>snapshot</name><value><struct><member><name>name_label</name><value>t</value></member><member><name>VCPUs_max</name><value>1</value></member><member><name>memory_static_max</name><value>1048576</value></member>` + extraVM + `</struct></value></member></struct></value>` +
		objs.String() + `</data></array></value></member></struct></value>`)
}

func chunkEntries(dir string, n int, data []byte) []tentry {
	name := fmt.Sprintf("%s/%08d", dir, n)
	s := sha1.Sum(data)
	return []tentry{{name: name, data: data}, {name: name + ".checksum", data: []byte(hex.EncodeToString(s[:]))}}
}

func cat(parts ...[]tentry) []tentry {
	var out []tentry
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// drain reads every disk of an archive both ways: indexed (Open) and
// streamed (NewStreamReader); it returns both errors.
func drain(t *testing.T, data []byte) (openErr, streamErr error) {
	p := filepath.Join(t.TempDir(), "t.xva")
	require.NoError(t, os.WriteFile(p, data, 0o644))
	openErr = func() error {
		vm, err := Open(p)
		if err != nil {
			return err
		}
		defer vm.Close()
		for _, d := range vm.Disks {
			if d.Image == nil {
				continue
			}
			buf := make([]byte, 64<<10)
			for off := int64(0); off < d.Image.Size(); off += int64(len(buf)) {
				n := min(int64(len(buf)), d.Image.Size()-off)
				if _, err := d.Image.ReadAt(buf[:n], off); err != nil {
					return err
				}
			}
		}
		return nil
	}()
	streamErr = drainStream(bytes.NewReader(data))
	return
}

func drainStream(r io.Reader) error {
	sr, err := NewStreamReader(r)
	if err != nil {
		return err
	}
	defer sr.Close()
	for {
		_, s, err := sr.NextDisk()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		for {
			_, _, err := s.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
	}
}

func TestBadInput(t *testing.T) {
	mib1 := bytes.Repeat([]byte{7}, ChunkSize)
	oneDisk := ovaXML(map[string]string{"Ref:a": "2097152"}, "")
	good := cat([]tentry{{name: "ova.xml", data: oneDisk}}, chunkEntries("Ref:a", 0, mib1), chunkEntries("Ref:a", 1, mib1))
	bad := func(i int, data []byte) []tentry {
		c := append([]tentry(nil), good...)
		c[i].data = data
		return c
	}
	badSum := append([]byte(nil), mib1...)
	badSum[12345] ^= 1
	goodTar := buildTar(t, good)

	tests := []struct {
		name string
		data []byte
		want string
		is   error
	}{
		{name: "malformed ova.xml", data: buildTar(t, bad(0, []byte("<value><struct><member>"))), want: "ova.xml"},
		{name: "ova.xml not xml-rpc", data: buildTar(t, bad(0, []byte("<value><foo/></value>"))), want: "unknown XML-RPC type"},
		{name: "ova.xml not first", data: buildTar(t, cat(chunkEntries("Ref:a", 0, mib1), good)), want: "want ova.xml"},
		{name: "empty archive", data: buildTar(t, nil), want: "no ova.xml"},
		{name: "not a tar", data: bytes.Repeat([]byte("x"), 2048), want: "not a tar"},
		{name: "missing VDI", data: buildTar(t, cat([]tentry{{name: "ova.xml", data: ovaXML(map[string]string{"Ref:a": ""}, "")}})), want: "Ref:a is not in ova.xml"},
		{name: "chunks out of order", data: buildTar(t, cat(good[:1], chunkEntries("Ref:a", 1, mib1), chunkEntries("Ref:a", 0, mib1))), want: "chunk names must increase"},
		{name: "chunk beyond size", data: buildTar(t, cat(good, chunkEntries("Ref:a", 2, mib1))), want: "beyond the VDI size"},
		{name: "chunk far beyond size", data: buildTar(t, cat(good[:3], chunkEntries("Ref:a", 99999999, mib1))), want: "beyond the VDI size"},
		{name: "dot-dot name", data: buildTar(t, cat(good[:1], []tentry{{name: "Ref:a/../../etc/passwd", data: []byte("x")}})), want: "'..'"},
		{name: "absolute name", data: buildTar(t, cat(good[:1], []tentry{{name: "/etc/passwd", data: []byte("x")}})), want: "absolute name"},
		{name: "symlink", data: buildTar(t, cat(good[:1], []tentry{{name: "Ref:a/00000000", typ: tar.TypeSymlink}})), want: "want a regular file"},
		{name: "truncated in a chunk", data: goodTar[:len(goodTar)/2], is: ErrTruncated},
		{name: "last chunk missing", data: buildTar(t, good[:3]), is: ErrTruncated},
		{name: "disk missing", data: buildTar(t, good[:1]), is: ErrTruncated},
		{name: "checksum mismatch", data: buildTar(t, cat(good[:3], []tentry{{name: "Ref:a/00000001", data: badSum}, good[4]})), want: `VDI Ref:a ("disk 0") chunk 1`, is: ErrChecksum},
		{name: "checksum missing", data: buildTar(t, cat(good[:2], good[3:])), want: "no checksum file"},
		{name: "checksum alone", data: buildTar(t, cat(good[:1], good[2:3])), want: "without its chunk"},
		{name: "unknown checksum kind", data: buildTar(t, cat(good[:2], []tentry{{name: "Ref:a/00000000.md5", data: []byte("x")}})), want: "unknown checksum"},
		{name: "unknown directory", data: buildTar(t, cat(good[:1], chunkEntries("Ref:zz", 0, mib1))), want: "not a VDI exported"},
		{name: "chunk too big", data: buildTar(t, cat(good[:1], chunkEntries("Ref:a", 0, append(mib1, 1)))), want: "at most"},
		{name: "absurd virtual_size", data: buildTar(t, []tentry{{name: "ova.xml", data: ovaXML(map[string]string{"Ref:a": "99999999999999999"}, "")}}), want: "out of range"},
		{name: "negative virtual_size", data: buildTar(t, []tentry{{name: "ova.xml", data: ovaXML(map[string]string{"Ref:a": "-1"}, "")}}), want: "out of range"},
		{name: "export_vsn 1", data: buildTar(t, bad(0, bytes.Replace(oneDisk, []byte("<name>export_vsn</name><value>2"), []byte("<name>export_vsn</name><value>1"), 1))), want: "want 2"},
		{name: "legacy appliance", data: buildTar(t, bad(0, []byte(`<appliance version="0.1"><vm name="vm"/></appliance>`))), want: "legacy"},
		{name: "two VMs", data: buildTar(t, bad(0, bytes.Replace(oneDisk, []byte("<data>"), []byte("<data><value><struct><member><name>class</name><value>VM</value></member><member><name>id</name><value>Ref:vm2</value></member><member><name>snapshot</name><value><struct></struct></value></member></struct></value>"), 1))), want: "2 VMs"},
		{name: "bad boolean", data: buildTar(t, bad(0, bytes.Replace(oneDisk, []byte("<boolean>1</boolean>"), []byte("<boolean>yes</boolean>"), 1))), want: "want 0 or 1"},
		{name: "bad cpus", data: buildTar(t, bad(0, bytes.Replace(oneDisk, []byte("<name>VCPUs_max</name><value>1"), []byte("<name>VCPUs_max</name><value>100000"), 1))), want: "VCPUs_max"},
		{name: "checksum file too big", data: buildTar(t, cat(good[:2], []tentry{{name: "Ref:a/00000000.checksum", data: make([]byte, 4096)}})), want: "checksum file of"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			oe, se := drain(t, tc.data)
			for mode, err := range map[string]error{"open": oe, "stream": se} {
				require.Error(t, err, mode)
				t.Logf("%s: %v", mode, err)
				if tc.want != "" {
					assert.Contains(t, err.Error(), tc.want, mode)
				}
				if tc.is != nil {
					assert.True(t, errors.Is(err, tc.is), "%s: %v is not %v", mode, err, tc.is)
				}
			}
		})
	}
	t.Run("good", func(t *testing.T) {
		oe, se := drain(t, goodTar)
		require.NoError(t, oe)
		require.NoError(t, se)
	})
}

// An ova.xml entry claiming a huge size is refused before anything is read.
func TestOvaXMLSizeCap(t *testing.T) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "ova.xml", Typeflag: tar.TypeReg, Size: 1 << 40, Mode: 0o644}))
	data := b.Bytes() // header only: the archive is cut right after
	err := drainStream(bytes.NewReader(data))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "more than")
}
