package vmx

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func realFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/*.vmx")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 8, "real .vmx files in testdata")
	return files
}

func parseFile(t testing.TB, path string) *File {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := Parse(bytes.NewReader(data), path)
	require.NoError(t, err)
	return f
}

// Files VMware wrote are already in VMware's canonical form, so parsing and
// marshalling gives back every byte, comments and blank lines included.
func TestMarshalGivesBackVMwareFiles(t *testing.T) {
	for _, path := range realFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			f, err := Parse(bytes.NewReader(data), path)
			require.NoError(t, err)
			if filepath.Base(path) == "annotation.vmx" {
				// Escapes of plain letters (|45|73…) come back as the letters.
				assert.NotEqual(t, string(data), string(f.Marshal()))
				g, err := Parse(bytes.NewReader(f.Marshal()), path)
				require.NoError(t, err)
				assert.Equal(t, f.Entries()[2].Value, g.Entries()[2].Value)
				return
			}
			assert.Equal(t, string(data), string(f.Marshal()))
		})
	}
}

func TestParseLines(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]string
	}{
		{"quoted", `displayName = "web01"`, map[string]string{"displayName": "web01"}},
		{"no spaces", `memsize="512"`, map[string]string{"memsize": "512"}},
		{"tabs and trailing comment", "\tnumvcpus\t=\t\"2\"   # two", map[string]string{"numvcpus": "2"}},
		{"unquoted (ESX 2 style)", `config.version = 4`, map[string]string{"config.version": "4"}},
		{"unquoted up to comment", `floppy0.present = TRUE#x`, map[string]string{"floppy0.present": "TRUE"}},
		{"empty value", `scsi0:0.redo = ""`, map[string]string{"scsi0:0.redo": ""}},
		{"implied empty value", `replay.filename =`, map[string]string{"replay.filename": ""}},
		{"hash inside quotes", `annotation = "issue #42"`, map[string]string{"annotation": "issue #42"}},
		{"CRLF", "a = \"1\"\r\nb = \"2\"\r\n", map[string]string{"a": "1", "b": "2"}},
		{"BOM", "\xef\xbb\xbf.encoding = \"UTF-8\"\n", map[string]string{".encoding": "UTF-8"}},
		{"comments and blanks", "#!/usr/bin/vmware\n\n  # note\nx = \"y\"", map[string]string{"x": "y"}},
		{"pipe escapes", `displayName = "app-db|22prod|22"`, map[string]string{"displayName": `app-db"prod"`}},
		{"newline escape", `annotation = "line 1|0Aline 2|0D|0Aline 3"`, map[string]string{"annotation": "line 1\nline 2\r\nline 3"}},
		{"literal pipe", `annotation = "a|7Cb"`, map[string]string{"annotation": "a|b"}},
		{"lower-case hex", `annotation = "|7c|0a"`, map[string]string{"annotation": "|\n"}},
		// Escape_Undo keeps a bad escape and does not restart at the byte after it.
		{"bad escape kept", `annotation = "a|zz |2x ||41 |"`, map[string]string{"annotation": "a|zz |2x ||41 |"}},
		{"UTF-8 value", `displayName = "Zürich-ℝ"`, map[string]string{"displayName": "Zürich-ℝ"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(strings.NewReader(tc.in), "t.vmx")
			require.NoError(t, err)
			got := map[string]string{}
			for _, e := range f.Entries() {
				got[e.Key] = e.Value
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	tests := []struct{ value, escaped string }{
		{`app-db"prod"`, `app-db|22prod|22`},
		{"a|b", "a|7Cb"},
		{"l1\nl2\r\n", "l1|0Al2|0D|0A"},
		{"tab\tkept", "tab\tkept"},
		{"del\x7f nul\x00", "del|7F nul|00"},
		{"# not a comment", "# not a comment"},
		{"Zürich", "Zürich"},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.escaped, Escape(tc.value), "escape %q", tc.value)
		assert.Equal(t, tc.value, Unescape(tc.escaped), "unescape %q", tc.escaped)
		f := NewFile("t.vmx")
		f.Set("annotation", tc.value)
		g, err := Parse(bytes.NewReader(f.Marshal()), "t.vmx")
		if strings.ContainsRune(tc.value, 0) {
			// NUL escaped as |00 parses back to a NUL byte.
			require.NoError(t, err)
		}
		require.NoError(t, err)
		v, _ := g.Get("ANNOTATION")
		assert.Equal(t, tc.value, v)
	}
}

func TestCaseInsensitiveKeys(t *testing.T) {
	f := parseFile(t, "testdata/case-insensitive.vmx")
	v, ok := f.Get("displayName")
	require.True(t, ok)
	assert.Equal(t, "FEDORA11", v)
	assert.Equal(t, 13, f.Line("displayname"))
	f.Set("DisplayName", "x")
	assert.Contains(t, string(f.Marshal()), "\nDISPLAYNAME = \"x\"\n", "Set keeps the file's spelling and place")
	f.Delete("displayNAME")
	_, ok = f.Get("displayName")
	assert.False(t, ok)
	assert.NotContains(t, string(f.Marshal()), "DISPLAYNAME")
}

func TestEncodings(t *testing.T) {
	// "Café – ü" in windows-1252: é=E9, en dash=96, ü=FC.
	cp := ".encoding = \"windows-1252\"\ndisplayName = \"Caf\xe9 \x96 \xfc\"\n"
	f, err := Parse(strings.NewReader(cp), "w.vmx")
	require.NoError(t, err)
	v, _ := f.Get("displayName")
	assert.Equal(t, "Café – ü", v)
	assert.Equal(t, "windows-1252", f.Encoding)
	assert.Equal(t, ".encoding = \"UTF-8\"\ndisplayName = \"Café – ü\"\n", string(f.Marshal()))

	f, err = Parse(strings.NewReader(".encoding = \"ISO-8859-1\"\nx = \"\xe9\"\n"), "l.vmx")
	require.NoError(t, err)
	v, _ = f.Get("x")
	assert.Equal(t, "é", v)
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		is    error
		parts []string
	}{
		{"duplicate key", "a = \"1\"\nmemsize = \"4\"\nx = \"y\"\nmemSize = \"8\"\n", ErrDuplicateKey,
			[]string{"bad.vmx", "line 4", `"memSize"`, "line 2"}},
		{"unterminated quote", "a = \"1\"\ndisplayName = \"web01\n", ErrSyntax,
			[]string{"bad.vmx", "line 2", "unterminated", "displayName"}},
		{"no equals", "config.version \"8\"\n", ErrSyntax, []string{"line 1"}},
		{"junk after value", "a = \"1\" b\n", ErrSyntax, []string{"line 1", `"b"`}},
		{"key without name", " = \"1\"\n", ErrSyntax, []string{"line 1"}},
		{"NUL byte", "a = \"1\x00\"\n", ErrSyntax, []string{"line 1", "NUL"}},
		{"non-ASCII key", "dïsplay = \"1\"\n", ErrSyntax, []string{"line 1", "printable ASCII"}},
		{"unknown encoding", "x = \"1\"\n.encoding = \"GBK\"\n", ErrEncoding, []string{"line 2", "GBK"}},
		{"invalid UTF-8", ".encoding = \"UTF-8\"\ndisplayName = \"\xff\xfe\"\n", nil,
			[]string{"line 2", "displayName", "not valid UTF-8"}},
		{"VMDK descriptor", "# Disk DescriptorFile\nversion=1\n", ErrNotVMX, []string{"VMDK"}},
		{"sparse VMDK", "KDMV\x01\x00\x00\x00", ErrNotVMX, []string{"VMDK"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.in), "bad.vmx")
			require.Error(t, err)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			for _, p := range tc.parts {
				assert.Contains(t, err.Error(), p)
			}
		})
	}
}

func TestOversize(t *testing.T) {
	big := strings.Repeat("annotation.x = \"0123456789012345678901234567890123456789\"\n", MaxFileSize/50)
	_, err := Parse(strings.NewReader(big), "big.vmx")
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrTooLarge))
	assert.Contains(t, err.Error(), "big.vmx")

	path := filepath.Join(t.TempDir(), "big.vmx")
	require.NoError(t, os.WriteFile(path, []byte(big), 0o644))
	_, err = Read(path, nil)
	assert.ErrorIs(t, err, ErrTooLarge)
}

func TestDetect(t *testing.T) {
	for _, path := range realFiles(t) {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.True(t, Detect(data), path)
		assert.True(t, Detect(data[:min(len(data), 96)]), "%s: first 96 bytes", path)
	}
	for _, tc := range []string{
		"",
		"# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicSparse\"\n",
		"KDMV\x01\x00\x00\x00\x03\x00",
		"<?xml version=\"1.0\"?>\n<value><struct>",
		"name = \"vm\"\nmemory = 1024\n", // xl.cfg
		"displayName = \"x\"\n",          // no key every VMware file has
	} {
		assert.False(t, Detect([]byte(tc)), "%q", tc)
	}
}
