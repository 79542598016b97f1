package lab

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestRunPattern(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"TestX", "^TestX$"},
		{"TestScripts/guest-builtin", "^TestScripts$/^guest-builtin$"},
		{"TestA/b.c", `^TestA$/^b\.c$`},
	} {
		assert.Equal(t, tc.want, RunPattern(tc.name), tc.name)
	}
}

func TestQuoteArgs(t *testing.T) {
	assert.Equal(t, `a 'b c' 'it'\''s' ''`, QuoteArgs([]string{"a", "b c", "it's", ""}))
}

// TestModuleOrder reads the dependencies of the stock kernel's modules and
// orders them the way insmod needs: virtio_ring before virtio before
// virtio_mmio, kvm before kvm-amd.
func TestModuleOrder(t *testing.T) {
	kernel, err := DebianKernel()
	if err != nil {
		testutil.Unavailable(t, err.Error())
	}
	files, err := ModuleFiles(kernel, "virtio_mmio", "kvm-amd")
	require.NoError(t, err)
	pos := map[string]int{}
	for i, f := range files {
		n := filepath.Base(f)
		pos[modName(n[:len(n)-len(".ko")])] = i + 1
	}
	for _, pair := range [][2]string{{"virtio_ring", "virtio"}, {"virtio", "virtio_mmio"}, {"kvm", "kvm_amd"}} {
		require.NotZero(t, pos[pair[0]], "%s is loaded", pair[0])
		require.NotZero(t, pos[pair[1]], "%s is loaded", pair[1])
		assert.Less(t, pos[pair[0]], pos[pair[1]], "%s before %s", pair[0], pair[1])
	}
	_, err = ModuleFiles(kernel, "no_such_module")
	assert.ErrorContains(t, err, "no_such_module")
}

// TestLabRuns boots the lab and runs commands in it: exit statuses, the
// working directory, the environment, output as it comes, and /dev/kvm.
func TestLabRuns(t *testing.T) {
	l := Shared(t)
	t.Logf("lab ready in %.1f s", l.ReadyIn.Seconds())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hello"), []byte("from the host\n"), 0o644))
	for _, tc := range []struct {
		name string
		argv []string
		code int
		out  string
	}{
		{"true", []string{"true"}, 0, ""},
		{"status", []string{"sh", "-c", "echo before; exit 3"}, 3, "before\n"},
		{"shared files", []string{"cat", "hello"}, 0, "from the host\n"},
		{"env", []string{"sh", "-c", `echo "$GREETING $TMPDIR"`}, 0, "hi there " + TempDir + "\n"},
		{"kvm", []string{"sh", "-c", "test -c /dev/kvm && echo kvm"}, 0, "kvm\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			code, err := l.Run(ctx, &out, dir, []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hi there"}, tc.argv)
			require.NoError(t, err)
			assert.Equal(t, tc.code, code)
			assert.Equal(t, tc.out, out.String())
		})
	}
	// A host file changed after the lab read it is read anew.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hello"), []byte("changed on the host\n"), 0o644))
	var out bytes.Buffer
	_, err := l.Run(ctx, &out, dir, nil, []string{"/bin/cat", "hello"})
	require.NoError(t, err)
	assert.Equal(t, "changed on the host\n", out.String())
	// The lab writes into the host's files.
	out.Reset()
	code, err := l.Run(ctx, &out, dir, nil, []string{"/bin/sh", "-c", "echo made > made"})
	require.NoError(t, err)
	require.Equal(t, 0, code, out.String())
	b, err := os.ReadFile(filepath.Join(dir, "made"))
	require.NoError(t, err)
	assert.Equal(t, "made\n", string(b))
}

// TestRunSharedRestarts crashes the lab's kernel during a command: the
// command runs once more in a new lab, and the crash is said.
func TestRunSharedRestarts(t *testing.T) {
	Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	crashOnce := "if [ ! -e crashed ]; then touch crashed; sync; echo c > /proc/sysrq-trigger; sleep 60; fi; echo survived"
	var out bytes.Buffer
	code, err := RunShared(ctx, &out, dir, []string{"PATH=/usr/bin:/bin"}, []string{"/bin/sh", "-c", crashOnce})
	require.NoError(t, err, out.String())
	assert.Equal(t, 0, code)
	assert.Contains(t, out.String(), "the lab died during the command")
	assert.Contains(t, out.String(), "survived\n")
	// The new lab is the shared one from now on.
	out.Reset()
	code, err = RunShared(ctx, &out, dir, nil, []string{"/bin/true"})
	require.NoError(t, err)
	assert.Equal(t, 0, code)
}

// TestWedgedLabIsStopped has the lab's kernel print what a wedged lab
// prints: the lab is stopped at once, and the command runs again in a new one.
func TestWedgedLabIsStopped(t *testing.T) {
	Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	wedgeOnce := "if [ ! -e wedged ]; then touch wedged; sync; echo '<2>rcu: INFO: rcu_preempt (a test)' > /dev/kmsg; sleep 600; fi; echo survived"
	var out bytes.Buffer
	start := time.Now()
	code, err := RunShared(ctx, &out, dir, []string{"PATH=/usr/bin:/bin"}, []string{"/bin/sh", "-c", wedgeOnce})
	require.NoError(t, err, out.String())
	assert.Equal(t, 0, code)
	assert.Contains(t, out.String(), "the lab died during the command")
	assert.Contains(t, out.String(), "survived\n")
	assert.Less(t, time.Since(start), 2*time.Minute, "the wedged lab was stopped, not waited for")
}

// TestRenew replaces the shared lab: the old one is stopped, the new one
// takes commands and is the shared one from then on.
func TestRenew(t *testing.T) {
	old := Shared(t)
	renewed, err := Renew()
	require.NoError(t, err)
	assert.NotSame(t, old, renewed)
	assert.True(t, old.exitedNow(), "the old lab was stopped")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	code, err := RunShared(ctx, &out, t.TempDir(), []string{"PATH=/usr/bin:/bin"}, []string{"/bin/sh", "-c", "echo renewed"})
	require.NoError(t, err)
	assert.Equal(t, 0, code)
	assert.Equal(t, "renewed\n", out.String())
	assert.Same(t, renewed, Shared(t))
}

func TestGuestFault(t *testing.T) {
	for _, tc := range []struct {
		reason, console string
		want            bool
	}{
		{"guest triple fault or shutdown (KVM_EXIT_SHUTDOWN) before the expected marker", "", true},
		{"kernel panic", "Kernel panic - not syncing: Fatal exception in interrupt", true},
		{"timeout after 4m0s without the expected marker", "", true},
		{"emergency shell", "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:", true},
		{"emergency shell", "You are in emergency mode", false},
		{"root device not found", "", false},
	} {
		assert.Equal(t, tc.want, GuestFault(tc.reason, tc.console), "%q", tc.reason)
	}
}
