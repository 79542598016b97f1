package verdict

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWatcher(t *testing.T) {
	tests := []struct {
		name    string
		expect  *regexp.Regexp
		console string
		decided bool
		pass    bool
		reason  string
		marker  string
	}{
		{name: "login prompt", console: "Debian GNU/Linux 12 host ttyS0\r\n\r\nhost login: ", decided: true, pass: true, marker: "login:"},
		{name: "systemd multi-user", console: "[  OK  ] Reached target multi-user.target - Multi-User System.\r\n", decided: true, pass: true, marker: "Reached target multi-user.target - Multi-User System"},
		{name: "systemd graphical", console: "[  OK  ] Reached target Graphical Interface.\n", decided: true, pass: true, marker: "Reached target Graphical Interface"},
		{name: "other target is not enough", console: "[  OK  ] Reached target Basic System.\n", decided: false},
		{name: "panic", console: "[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n", decided: true, pass: false, reason: "kernel panic", marker: "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"},
		{name: "vfs without panic line", console: "VFS: Unable to mount root fs via NFS\n", decided: true, reason: "root filesystem not mounted", marker: "VFS: Unable to mount root fs via NFS"},
		{name: "emergency mode", console: "You are in emergency mode. After logging in, type \"journalctl -xb\"\n", decided: true, reason: "emergency shell", marker: "You are in emergency mode. After logging in, type \"journalctl -xb\""},
		{name: "entering emergency", console: "[  OK  ] Started x.\nEntering emergency mode. Exit the shell to continue.\n", decided: true, reason: "emergency shell", marker: "Entering emergency mode. Exit the shell to continue."},
		{name: "maintenance password", console: "Give root password for maintenance\n(or press Control-D to continue): ", decided: true, reason: "emergency shell", marker: "Give root password for maintenance"},
		{name: "rescue", console: "You are in rescue mode.\n", decided: true, reason: "rescue shell", marker: "You are in rescue mode."},
		{name: "initramfs gave up", console: "Gave up waiting for root file system device.  Common problems:\n", decided: true, reason: "root device not found", marker: "Gave up waiting for root file system device.  Common problems:"},
		{name: "initramfs prompt", console: "BusyBox v1.35.0\n\n(initramfs) ", decided: true, reason: "initramfs shell", marker: "(initramfs)"},
		{name: "initramfs word inside a line", console: "Loading, please wait...\nBegin: Running /scripts/init-premount ... (initramfs) done.\n", decided: false},
		{name: "custom expect", expect: regexp.MustCompile(`probe: done [0-9a-f]+`), console: "probe: start\nprobe: done 1f2e\n", decided: true, pass: true, marker: "probe: done 1f2e"},
		{name: "custom expect does not match login", expect: regexp.MustCompile(`TOKEN-[0-9]+`), console: "login: ", decided: false},
		{name: "first decision wins", console: "host login: \nKernel panic - not syncing: late\n", decided: true, pass: true, marker: "login:"},
		{name: "fail before pass", console: "Kernel panic - not syncing: early\nhost login: ", decided: true, reason: "kernel panic", marker: "Kernel panic - not syncing: early"},
		{name: "nothing", console: "Linux version 6.1.0\n", decided: false},
		{name: "custom expect open line waits", expect: regexp.MustCompile(`done [0-9]+`), console: "done 12", decided: false},
		{name: "custom expect open line followed", expect: regexp.MustCompile(`done [0-9]+`), console: "done 12 ", decided: true, pass: true, marker: "done 12"},
	}
	for _, tc := range tests {
		// Feed whole, byte by byte and in 3-byte pieces: markers split across
		// writes must still be seen.
		for _, step := range []int{0, 1, 3} {
			t.Run(tc.name, func(t *testing.T) {
				w := New(tc.expect)
				feed(t, w, tc.console, step)
				res, ok := w.Decided()
				require.Equal(t, tc.decided, ok, "step %d", step)
				if !ok {
					return
				}
				assert.Equal(t, tc.pass, res.Pass)
				if tc.reason != "" {
					assert.Equal(t, tc.reason, res.Reason)
				}
				assert.Equal(t, tc.marker, res.Marker)
				assert.Equal(t, tc.console, w.Tail())
			})
		}
	}
}

func feed(t *testing.T, w *Watcher, s string, step int) {
	t.Helper()
	if step == 0 {
		step = len(s) + 1
	}
	for len(s) > 0 {
		n := min(step, len(s))
		m, err := w.Write([]byte(s[:n]))
		require.NoError(t, err)
		require.Equal(t, n, m)
		s = s[n:]
	}
}

func TestTailBounded(t *testing.T) {
	w := New(nil)
	chunk := strings.Repeat("x", 1000) + "\n"
	for i := 0; i < 200; i++ {
		feed(t, w, chunk, 0)
	}
	feed(t, w, "END", 0)
	tail := w.Tail()
	assert.Len(t, tail, TailSize)
	assert.True(t, strings.HasSuffix(tail, "xxx\nEND"))
	// One write larger than the tail.
	big := strings.Repeat("y", TailSize+10) + "Z"
	feed(t, w, big, 0)
	assert.Len(t, w.Tail(), TailSize)
	assert.True(t, strings.HasSuffix(w.Tail(), "yZ"))
}

func TestLongLineWithoutNewline(t *testing.T) {
	w := New(nil)
	// A guest printing without newlines must not grow memory, and a marker at
	// the end must still be found.
	for i := 0; i < 1000; i++ {
		feed(t, w, strings.Repeat("a", 1000), 0)
	}
	assert.LessOrEqual(t, cap(w.line), 8*lineMax)
	feed(t, w, "\nKernel panic - not syncing: x\n", 1)
	res, ok := w.Decided()
	require.True(t, ok)
	assert.Equal(t, "kernel panic", res.Reason)
}

func TestFlush(t *testing.T) {
	w := New(regexp.MustCompile(`done [0-9]+`))
	feed(t, w, "done 12", 1)
	_, ok := w.Decided()
	require.False(t, ok)
	w.Flush()
	res, ok := w.Decided()
	require.True(t, ok)
	assert.Equal(t, "done 12", res.Marker)
}

func TestDecideExternal(t *testing.T) {
	w := New(nil)
	got := w.Decide(Result{Reason: "timeout after 1s"})
	assert.Equal(t, "timeout after 1s", got.Reason)
	feed(t, w, "login: ", 0)
	res, _ := w.Decided()
	assert.False(t, res.Pass, "a later console marker does not override")

	w = New(nil)
	feed(t, w, "login: ", 0)
	got = w.Decide(Result{Reason: "reset"})
	assert.True(t, got.Pass)
}

func TestReportJSON(t *testing.T) {
	r := Report{Host: "pvm", Engine: "builtin", Kernel: "vmlinuz", Cmdline: "console=ttyS0", CPUs: 2, MemoryMiB: 256,
		Disks: []DiskReport{{ID: "d0", Format: "vmdk", Digest: strings.Repeat("a", 64)}}, Console: "tail", BootMS: 1234}
	r.Apply(Result{Pass: true, Reason: "expected marker seen", Marker: "login:"})
	b, err := json.Marshal(r)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	for _, k := range []string{"result", "reason", "marker", "boot_ms", "host", "engine", "kernel", "cmdline", "cpus", "memory_mib", "disks", "console"} {
		assert.Contains(t, m, k)
	}
	assert.Equal(t, "pass", m["result"])
	d := m["disks"].([]any)[0].(map[string]any)
	assert.Equal(t, map[string]any{"id": "d0", "format": "vmdk", "digest": strings.Repeat("a", 64)}, d)
	r.Apply(Result{Reason: "kernel panic"})
	assert.Equal(t, Fail, r.Result)
}
