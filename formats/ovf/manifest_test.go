package ovf

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseManifest(t *testing.T) {
	s1 := sha1.Sum([]byte("a"))
	s256 := sha256.Sum256([]byte("a"))
	s512 := sha512.Sum512([]byte("a"))
	tests := []struct {
		name    string
		text    string
		want    map[string]string // file → algo
		wantErr string
	}{
		{name: "ovftool spelling", text: fmt.Sprintf("SHA256(x.ovf)= %x\nSHA256(x-disk1.vmdk)= %x\n", s256, s256),
			want: map[string]string{"x.ovf": "SHA256", "x-disk1.vmdk": "SHA256"}},
		{name: "sha256sum --tag / VirtualBox spelling, CRLF", text: fmt.Sprintf("SHA256 (x.ovf) = %x\r\nSHA1 (x.vmdk) = %x\r\n", s256, s1),
			want: map[string]string{"x.ovf": "SHA256", "x.vmdk": "SHA1"}},
		{name: "SHA512 and blank lines", text: fmt.Sprintf("\nSHA512(a b.iso)= %X\n\n", s512), want: map[string]string{"a b.iso": "SHA512"}},
		{name: "unknown algorithm", text: fmt.Sprintf("MD5(x)= %x\n", s1), wantErr: `line 1: algorithm "MD5"`},
		{name: "short digest", text: "SHA256(x)= abcd\n", wantErr: "line 1: SHA256 digest of \"x\" is not 32 hex bytes"},
		{name: "no equals", text: fmt.Sprintf("SHA256(x) %x\n", s256), wantErr: "no '='"},
		{name: "duplicate", text: fmt.Sprintf("SHA256(x)= %x\nSHA256(x)= %x\n", s256, s256), wantErr: "line 2: \"x\" is listed twice"},
		{name: "garbage", text: "hello\n", wantErr: "line 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseManifest("t.mf", []byte(tc.text))
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			got := map[string]string{}
			for k, e := range m.Entries {
				got[k] = e.Algo
			}
			assert.Equal(t, tc.want, got)
			for k := range tc.want {
				assert.NoError(t, m.Verify(k, strings.NewReader("a")))
				err := m.Verify(k, strings.NewReader("b"))
				require.ErrorIs(t, err, ErrManifest)
				assert.Contains(t, err.Error(), k)
			}
		})
	}
}
