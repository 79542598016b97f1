package fix

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseConsole(t *testing.T) {
	ok := string(FormatResult(Result{Step: StepDeviceNames, OK: true, Changed: []string{"/etc/fstab:2: /dev/sda1 -> UUID=x"}}))
	bad := string(FormatResult(Result{Step: StepInitramfs, OK: false, Message: "update-initramfs: exit status 1", Output: "E: no space"}))
	tests := []struct {
		name    string
		console string
		steps   []string
		wantErr string
	}{
		{"kernel lines around, CRLF", "[    0.1] Linux version 6.1\r\n" + Begin + "\r\n" + ok + "[    2.0] random: crng init done\n" + bad + End + "\r\n", []string{StepDeviceNames, StepInitramfs}, ""},
		{"kernel text before the prefix on a line", Begin + "\n[    3.2] ext4: mounted" + ok + End + "\n", []string{StepDeviceNames}, ""},
		{"no begin", "Kernel panic - not syncing: Attempted to kill init!\n", nil, "never started"},
		{"no end", Begin + "\n" + ok, []string{StepDeviceNames}, "stopped before it finished"},
		{"lines before begin ignored", ok + Begin + "\n" + End + "\n", nil, ""},
		{"malformed JSON named", Begin + "\n" + Prefix + "{\"step\": \"x\", \n" + End + "\n", nil, "console line 2: malformed result"},
		{"unknown field", Begin + "\n" + Prefix + `{"step":"x","ok":true,"evil":1}` + "\n" + End + "\n", nil, "malformed result"},
		{"no step", Begin + "\n" + Prefix + `{"ok":true}` + "\n" + End + "\n", nil, "no step named"},
		{"overlong line", Begin + "\n" + Prefix + `{"step":"x","message":"` + strings.Repeat("a", MaxResultLine) + `"}` + "\n" + End + "\n", nil, "longer than"},
		{"too many", Begin + "\n" + strings.Repeat(ok, MaxResults+1) + End + "\n", nil, "more than 64 results"},
		{"end before begin", End + "\n" + Begin + "\n", nil, "before"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := ParseConsole([]byte(tc.console))
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
			} else {
				require.NoError(t, err)
			}
			if tc.steps != nil {
				var got []string
				for _, r := range rs {
					got = append(got, r.Step)
				}
				assert.Equal(t, tc.steps, got)
			}
		})
	}
}

func TestLimitedBuffer(t *testing.T) {
	b := &limitedBuffer{max: 4}
	n, err := b.Write([]byte("abcdef"))
	assert.Equal(t, 6, n)
	assert.NoError(t, err)
	b.Write([]byte("gh"))
	assert.Equal(t, "abcd", b.buf.String())
	assert.Equal(t, int64(4), b.dropped)
}
