package vmm

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/vmm/devices"
	"github.com/vmconv/vmconv/vmm/kvm"
)

// fakeRun builds kvm_run pages the way KVM fills them.
type fakeRun struct{ page []byte }

func newFakeRun() *fakeRun { return &fakeRun{page: make([]byte, 4096)} }

func (f *fakeRun) io(out bool, port uint16, size int, data []byte) {
	clear(f.page)
	binary.LittleEndian.PutUint32(f.page[8:], kvm.ExitIO)
	u := f.page[32:]
	if out {
		u[0] = 1
	}
	u[1] = byte(size)
	binary.LittleEndian.PutUint16(u[2:], port)
	binary.LittleEndian.PutUint32(u[4:], uint32(len(data)/size))
	binary.LittleEndian.PutUint64(u[8:], 1024)
	copy(f.page[1024:], data)
}

func (f *fakeRun) mmio(addr uint64, write bool, data []byte) {
	clear(f.page)
	binary.LittleEndian.PutUint32(f.page[8:], kvm.ExitMMIO)
	u := f.page[32:]
	binary.LittleEndian.PutUint64(u, addr)
	copy(u[8:16], data)
	binary.LittleEndian.PutUint32(u[16:], uint32(len(data)))
	if write {
		u[20] = 1
	}
}

func (f *fakeRun) exit(reason uint32, union ...uint64) {
	clear(f.page)
	binary.LittleEndian.PutUint32(f.page[8:], reason)
	for i, v := range union {
		binary.LittleEndian.PutUint64(f.page[32+8*i:], v)
	}
}

func TestExitHandling(t *testing.T) {
	var console bytes.Buffer
	m := &machine{host: HostPVM, stopCh: make(chan struct{})}
	m.uart = devices.NewUART(&console, nil)
	require.NoError(t, m.pio.Register("uart", uartPort, 8, m.uart))
	resets := 0
	require.NoError(t, m.pio.Register("i8042", 0x60, 5, devices.NewI8042(func() { resets++ })))
	f := newFakeRun()
	c := kvm.NewDetachedVCPU(1, f.page)

	// A string OUT of three bytes to the UART ("rep outsb").
	f.io(true, uartPort, 1, []byte("abc"))
	_, done := m.exit(c)
	require.False(t, done)
	assert.Equal(t, "abc", console.String())
	// An IN from the line status register lands in the page.
	f.io(false, uartPort+5, 1, []byte{0})
	_, done = m.exit(c)
	require.False(t, done)
	assert.Equal(t, byte(0x60), f.page[1024])
	// An IN from nowhere reads all ones.
	f.io(false, 0x1234, 2, []byte{0, 0})
	m.exit(c)
	assert.Equal(t, []byte{0xff, 0xff}, f.page[1024:1026])
	// i8042 reset.
	f.io(true, 0x64, 1, []byte{0xfe})
	m.exit(c)
	assert.Equal(t, 1, resets)
	// IO whose data lies outside the page is refused, not followed.
	f.io(true, uartPort, 1, []byte("x"))
	binary.LittleEndian.PutUint64(f.page[32+8:], 1<<40)
	r, done := m.exit(c)
	require.True(t, done)
	assert.Contains(t, r.reason, "outside kvm_run")

	// MMIO to the virtio window reaches the device; unclaimed MMIO reads ones.
	require.NoError(t, m.mmio.Register("probe", virtioBase, 0x1000, devices.NewBlock(nil, nil, "x", nil, nil)))
	f.mmio(virtioBase, false, make([]byte, 4))
	m.exit(c)
	assert.Equal(t, uint32(0x74726976), binary.LittleEndian.Uint32(f.page[40:]))
	f.mmio(0xe0000000, false, make([]byte, 4))
	m.exit(c)
	assert.Equal(t, uint32(0xffffffff), binary.LittleEndian.Uint32(f.page[40:]))

	tests := []struct {
		name   string
		reason uint32
		union  []uint64
		want   []string
		reset  bool
		fault  bool
	}{
		{"triple fault", kvm.ExitShutdown, nil, []string{"KVM_EXIT_SHUTDOWN"}, true, false},
		{"emulation failure", kvm.ExitInternalError, []uint64{1 | 2<<32, 0xdead, 0xbeef}, []string{"KVM_EXIT_INTERNAL_ERROR suberror 1 (emulation failure)", `on a "pvm" host`, "0xdead", "vCPU 1"}, false, true},
		{"fail entry", kvm.ExitFailEntry, []uint64{0x21}, []string{"KVM_EXIT_FAIL_ENTRY", "0x21"}, false, true},
		{"system reset", kvm.ExitSystemEvent, []uint64{2}, []string{"reset", "KVM_EXIT_SYSTEM_EVENT"}, true, false},
		{"system crash", kvm.ExitSystemEvent, []uint64{3}, []string{"crash"}, false, true},
		{"unknown", 99, nil, []string{"unexpected KVM_EXIT_99"}, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.exit(tc.reason, tc.union...)
			r, done := m.exit(c)
			require.True(t, done)
			for _, w := range tc.want {
				assert.Contains(t, r.reason, w)
			}
			assert.Equal(t, tc.reset, r.reset)
			assert.Equal(t, tc.fault, r.fault)
		})
	}
	f.exit(kvm.ExitIntr)
	_, done = m.exit(c)
	assert.False(t, done, "a signal is not the end")
}
