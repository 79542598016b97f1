//go:build linux

package initfix

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/boot/lvm"
)

// The table DM_TABLE_LOAD is given: one dm_target_spec per segment, each
// followed by its parameter string and padded to 8 bytes, next pointing
// at the following spec (linux/dm-ioctl.h).
func TestDMTable(t *testing.T) {
	m := &lvm.Mapping{Name: "rhel-root", Targets: []lvm.Target{
		{Start: 0, Length: 8192, Areas: []lvm.Area{{PV: "A", Offset: 2048}}},
		{Start: 8192, Length: 4096, StripeSize: 128, Areas: []lvm.Area{{PV: "A", Offset: 10240}, {PV: "B", Offset: 2048}}},
	}}
	dev := map[string]string{"A": "253:2", "B": "8:17"}
	b := dmTable(m, func(pv string) string { return dev[pv] })
	want := []struct {
		start, length uint64
		typ, params   string
	}{
		{0, 8192, "linear", "253:2 2048"},
		{8192, 4096, "striped", "2 128 253:2 10240 8:17 2048"},
	}
	off := 0
	for i, w := range want {
		require.LessOrEqual(t, off+dmTargetSize, len(b), "target %d", i)
		var spec dmTargetSpec
		require.NoError(t, binary.Read(bytes.NewReader(b[off:off+dmTargetSize]), binary.NativeEndian, &spec))
		assert.Equal(t, w.start, spec.SectorStart)
		assert.Equal(t, w.length, spec.Length)
		assert.Equal(t, w.typ, string(bytes.TrimRight(spec.TargetType[:], "\x00")))
		params := b[off+dmTargetSize:]
		end := bytes.IndexByte(params, 0)
		require.GreaterOrEqual(t, end, 0)
		assert.Equal(t, w.params, string(params[:end]))
		assert.Zero(t, spec.Next%8, "spec %d is not 8-byte aligned", i)
		assert.Greater(t, int(spec.Next), dmTargetSize+end)
		off += int(spec.Next)
	}
	assert.Equal(t, len(b), off)
}

// The ioctl numbers are _IOWR(0xfd, nr, struct dm_ioctl) as libdevmapper
// computes them.
func TestDMCmd(t *testing.T) {
	assert.Equal(t, uintptr(0xc138fd03), dmCmd(dmDevCreate))
	assert.Equal(t, uintptr(0xc138fd06), dmCmd(dmDevSuspend))
	assert.Equal(t, uintptr(0xc138fd09), dmCmd(dmTableLoad))
}
