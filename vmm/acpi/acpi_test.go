package acpi

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/internal/testutil"
)

// disassemble runs iasl -d on one table and returns the .dsl text.
func disassemble(t *testing.T, iasl string, tb Table) string {
	dir := t.TempDir()
	in := filepath.Join(dir, strings.ToLower(tb.Signature)+".dat")
	require.NoError(t, os.WriteFile(in, tb.Data, 0o644))
	cmd := exec.Command(iasl, "-d", in)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "iasl -d %s:\n%s", tb.Signature, out)
	assert.NotContains(t, string(out), "rror", "iasl output for %s:\n%s", tb.Signature, out)
	dsl, err := os.ReadFile(strings.TrimSuffix(in, ".dat") + ".dsl")
	require.NoError(t, err)
	return string(dsl)
}

func TestTablesWithIASL(t *testing.T) {
	iasl := testutil.RequireTool(t, "iasl")
	cfg := Config{CPUs: 3, UART: true, SleepPort: 0x600, Virtio: []MMIODevice{
		{Base: 0xd0000000, Size: 0x1000, IRQ: 5},
		{Base: 0xd0001000, Size: 0x1000, IRQ: 6},
		{Base: 0xd0002000, Size: 0x1000, IRQ: 7},
	}}
	tabs, err := Build(0xe0000, cfg)
	require.NoError(t, err)
	require.Equal(t, uint64(0xe0000), tabs.RSDP)
	sigs := map[string]string{}
	for _, tb := range tabs.Tables {
		// The table in the blob is the one at its address.
		off := tb.Addr - tabs.Base
		require.Equal(t, tb.Data, tabs.Blob[off:off+uint64(len(tb.Data))])
		if tb.Signature == "RSDP" {
			continue // iasl does not take a bare RSDP; checked below
		}
		dsl := disassemble(t, iasl, tb)
		assert.NotContains(t, dsl, "Incorrect", "%s checksum", tb.Signature)
		assert.NotContains(t, dsl, "Invalid", "%s", tb.Signature)
		sigs[tb.Signature] = dsl
	}
	r := tabs.Tables[0].Data
	assert.Equal(t, "RSD PTR ", string(r[:8]))
	assert.Zero(t, sum(r[:20]), "RSDP checksum over the ACPI 1.0 part")
	assert.Zero(t, sum(r), "RSDP extended checksum")
	assert.Equal(t, byte(2), r[15], "revision 2: XSDT present")
	assert.Equal(t, tabs.Tables[1].Addr, binary.LittleEndian.Uint64(r[24:]))
	assert.Regexp(t, `ACPI Table Address\s+0\s*:\s*00000000000E0070`, sigs["XSDT"])
	assert.Regexp(t, `Hardware Reduced \(V5\)\s*:\s*1`, sigs["FACP"])
	assert.Regexp(t, `Sleep Control Register : \[Generic Address Structure\]\s*\n(.*\n){3}.*Access Width : 01 \[Byte Access:8\]\s*\n.*Address : 0000000000000600`, sigs["FACP"])
	assert.Regexp(t, `Sleep Status Register : \[Generic Address Structure\]\s*\n(.*\n){4}.*Address : 0000000000000601`, sigs["FACP"])
	assert.Regexp(t, `Name \(_S5, Package \(0x02\)\s*//[^\n]*\n\s*\{\s*0x05,\s*Zero\s*\}`, sigs["DSDT"])
	assert.Regexp(t, fmt.Sprintf(`DSDT Address\s*:\s*%08X`, tabs.Tables[4].Addr), sigs["FACP"])
	// One enabled local APIC per CPU, the IOAPIC and the IRQ0 override.
	assert.Equal(t, 3, len(regexp.MustCompile(`Subtable Type\s*:\s*00 \[Processor Local APIC\]`).FindAllString(sigs["APIC"], -1)))
	for i := 0; i < 3; i++ {
		assert.Regexp(t, fmt.Sprintf(`Local Apic ID\s*:\s*%02X`, i), sigs["APIC"])
	}
	assert.Regexp(t, `Address\s*:\s*FEC00000`, sigs["APIC"])
	assert.Regexp(t, `Source\s*:\s*00\s*\n\s*\[[^\]]*\]\s*Interrupt\s*:\s*00000002`, sigs["APIC"])
	// DSDT: the UART and each virtio-mmio transport with its window and IRQ.
	d := sigs["DSDT"]
	assert.Contains(t, d, `Device (COM1)`)
	assert.Contains(t, d, `EisaId ("PNP0501")`)
	assert.Regexp(t, `IO \(Decode16,\s*0x03F8,\s*// Range Minimum\s*0x03F8,\s*// Range Maximum\s*0x01,\s*// Alignment\s*0x08,`, d)
	assert.Regexp(t, `IRQNoFlags \(\)\s*\{4\}`, d)
	for i, v := range cfg.Virtio {
		assert.Contains(t, d, fmt.Sprintf("Device (V%03X)", i))
		assert.Regexp(t, fmt.Sprintf(`Memory32Fixed \(ReadWrite,\s*0x%08X,\s*// Address Base\s*0x00001000,`, v.Base), d)
		assert.Regexp(t, fmt.Sprintf(`Interrupt \(ResourceConsumer, Level, ActiveHigh, Exclusive, ,, \)\s*\{\s*0x%08X,`, v.IRQ), d)
	}
	assert.Equal(t, 3, strings.Count(d, `"LNRO0005"`))
}

func sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

func TestManyDevicesLongPackages(t *testing.T) {
	iasl := testutil.RequireTool(t, "iasl")
	var v []MMIODevice
	for i := 0; i < 40; i++ {
		v = append(v, MMIODevice{Base: 0xd0000000 + uint64(i)*0x1000, Size: 0x1000, IRQ: uint32(5 + i%18)})
	}
	tabs, err := Build(0xe0000, Config{CPUs: 64, UART: true, Virtio: v})
	require.NoError(t, err)
	d := disassemble(t, iasl, tabs.Tables[4])
	assert.Equal(t, 40, strings.Count(d, `"LNRO0005"`))
	assert.Contains(t, d, "Device (V027)")
	m := disassemble(t, iasl, tabs.Tables[3])
	assert.Equal(t, 64, strings.Count(m, "[Processor Local APIC]"))
}

func TestBuildErrors(t *testing.T) {
	_, err := Build(0xe0000, Config{CPUs: 0})
	assert.Error(t, err)
	_, err = Build(0xe0000, Config{CPUs: 1, Virtio: []MMIODevice{{Base: 1 << 33, Size: 0x1000}}})
	assert.ErrorContains(t, err, "above 4 GiB")
}

// TestDSDTWithACPIExec loads the DSDT into ACPICA's interpreter (acpiexec)
// and evaluates each device's objects, as a kernel's ACPI core would.
func TestDSDTWithACPIExec(t *testing.T) {
	acpiexec := testutil.RequireTool(t, "acpiexec")
	tabs, err := Build(0xe0000, Config{CPUs: 1, UART: true, SleepPort: 0x600, Virtio: []MMIODevice{
		{Base: 0xd0000000, Size: 0x1000, IRQ: 5}, {Base: 0xd0001000, Size: 0x1000, IRQ: 6}}})
	require.NoError(t, err)
	dir := t.TempDir()
	p := filepath.Join(dir, "dsdt.dat")
	require.NoError(t, os.WriteFile(p, tabs.Tables[4].Data, 0o644))
	cmds := []string{`evaluate \_SB.COM1._HID`, `evaluate \_SB.COM1._CRS`, `evaluate \_S5`}
	for _, d := range []string{"V000", "V001"} {
		cmds = append(cmds, `evaluate \_SB.`+d+`._HID`, `evaluate \_SB.`+d+`._UID`, `evaluate \_SB.`+d+`._CRS`)
	}
	out, err := exec.Command(acpiexec, "-b", strings.Join(cmds, "; "), p).CombinedOutput()
	require.NoError(t, err, "%s", out)
	s := string(out)
	assert.Contains(t, s, "Namespace contains")
	assert.NotContains(t, s, "AE_")
	// PNP0501 compresses to the EISA ID 0x0105D041.
	assert.Regexp(t, `COM1._HID returned[^\n]*\n\s*\[Integer\] = 000000000105D041`, s)
	assert.Equal(t, 2, strings.Count(s, `[String] Length 08 = "LNRO0005"`))
	assert.Regexp(t, `_S5 returned[^\n]*\n\s*\[Package\] Contains 2 Elements:\s*\n\s*\[Integer\] = 0000000000000005\s*\n\s*\[Integer\] = 0000000000000000`, s)
	assert.Regexp(t, `V001._UID returned[^\n]*\n\s*\[Integer\] = 0000000000000001`, s)
	// _CRS of V001: Memory32Fixed(RW, 0xd0001000, 0x1000), Interrupt(Level, High) {6}, end tag.
	assert.Regexp(t, `V001._CRS returned[^\n]*\n\s*\[Buffer\] Length 17 = \s*\n\s*0000: 86 09 00 01 00 10 00 D0 00 10 00 00 89 06 00 01\s*//[^\n]*\n\s*0010: 01 06 00 00 00 79 00`, s)
	// COM1: IO 0x3f8-0x3f8, 8 ports; IRQ 4.
	assert.Regexp(t, `COM1._CRS returned[^\n]*\n\s*\[Buffer\] Length 0D =\s*0000: 47 01 F8 03 F8 03 01 08 22 10 00 79 00`, s)
}
