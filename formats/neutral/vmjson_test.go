package neutral

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func fullVM() *VM {
	vm := testVM(
		Disk{ID: "disk0", Device: "disk", Bus: "scsi", Unit: 0, CapacityBytes: 10 << 30, Bootable: true,
			Digest: strings.Repeat("ab", 32)},
		Disk{ID: "disk1", Device: "disk", Bus: "nvme", Unit: 1, CapacityBytes: 1 << 20},
		Disk{ID: "cd0", Device: "cdrom", Bus: "ide", Unit: 0, ReadOnly: true},
	)
	vm.Boot = &Boot{Kernel: "/boot/vmlinuz", Initrd: "/boot/initrd.img", Cmdline: "root=/dev/xvda1 ro"}
	vm.Source = &Source{Format: "vmx", File: "/vms/web-01/web-01.vmx"}
	vm.NICs = append(vm.NICs, NIC{MAC: "AA:00:00:00:00:01", Network: "xenbr0"}, NIC{})
	return vm
}

func TestVMJSONRoundTrip(t *testing.T) {
	vm := fullVM()
	data, err := vm.MarshalIndent()
	require.NoError(t, err)
	again, err := vm.MarshalIndent()
	require.NoError(t, err)
	assert.Equal(t, data, again, "deterministic")
	assert.True(t, bytes.HasSuffix(data, []byte("}\n")))

	got, err := ParseVM(data, "vm.json")
	require.NoError(t, err)
	assert.Equal(t, vm, got)

	// The fixed field names are the ones scripts read.
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	for _, k := range []string{"schema", "name", "uuid", "firmware", "cpus", "cores_per_socket", "memory_mib", "guest_os", "disks", "nics", "boot", "source", "extensions"} {
		assert.Contains(t, m, k)
	}
	d := m["disks"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "device", "bus", "unit", "capacity_bytes", "bootable", "read_only", "digest"} {
		assert.Contains(t, d, k)
	}
	n := m["nics"].([]any)[0].(map[string]any)
	for _, k := range []string{"mac", "network", "model"} {
		assert.Contains(t, n, k)
	}
	assert.Contains(t, m["extensions"], "vmware")
	assert.Contains(t, m["extensions"], "xen")

	// No disks, no NICs: lists, not null.
	empty := &VM{Schema: 1, Name: "x", Firmware: "uefi", CPUs: 1, MemoryMiB: 1}
	data, err = empty.MarshalIndent()
	require.NoError(t, err)
	assert.Contains(t, string(data), `"disks": []`)
	assert.Contains(t, string(data), `"nics": []`)
}

// set changes one field of a JSON document given as a path of keys and
// indexes; a nil value deletes the field.
func set(t *testing.T, doc map[string]any, value any, path ...any) {
	var cur any = doc
	for i, p := range path {
		last := i == len(path)-1
		switch k := p.(type) {
		case string:
			m := cur.(map[string]any)
			if last {
				if value == nil {
					delete(m, k)
				} else {
					m[k] = value
				}
				return
			}
			cur = m[k]
		case int:
			a := cur.([]any)
			if last {
				a[k] = value
				return
			}
			cur = a[k]
		}
	}
}

func TestParseVMErrors(t *testing.T) {
	base, err := fullVM().MarshalIndent()
	require.NoError(t, err)
	cases := []struct {
		name  string
		value any
		path  []any
		want  string
	}{
		{"schema 2", 2, []any{"schema"}, "schema: 2 is not supported"},
		{"schema missing", nil, []any{"schema"}, "schema: 0 is not supported"},
		{"schema string", "1", []any{"schema"}, "schema: expected int, found JSON string"},
		{"firmware", "efi", []any{"firmware"}, `firmware: "efi" is not one of bios, uefi`},
		{"no cpus", 0, []any{"cpus"}, "cpus: 0 is outside 1..4096"},
		{"negative cpus", -3, []any{"cpus"}, "cpus: -3 is outside"},
		{"absurd cpus", 1 << 40, []any{"cpus"}, "cpus: 1099511627776 is outside"},
		{"float cpus", 1.5, []any{"cpus"}, "cpus: expected int, found JSON number 1.5"},
		{"cores", 3, []any{"cores_per_socket"}, "cores_per_socket: 3 does not divide cpus (4)"},
		{"cores > cpus", 8, []any{"cores_per_socket"}, "cores_per_socket: 8 is outside 0..4"},
		{"memory", 0, []any{"memory_mib"}, "memory_mib: 0 is outside"},
		{"uuid", "not-a-uuid", []any{"uuid"}, `uuid: "not-a-uuid" is not of the form`},
		{"bus", "foo", []any{"disks", 2, "bus"}, `disks[2].bus: "foo" is not one of scsi, sata, ide, nvme, xen, virtio`},
		{"device", "floppy", []any{"disks", 1, "device"}, `disks[1].device: "floppy" is not one of disk, cdrom`},
		{"duplicate id", "DISK0", []any{"disks", 1, "id"}, `disks[1].id: "DISK0" is already used by disks[0]`},
		{"traversal id", "../x", []any{"disks", 0, "id"}, `disks[0].id: "../x" is not a valid disk id`},
		{"slash id", "a/b", []any{"disks", 0, "id"}, `disks[0].id: "a/b" is not a valid disk id`},
		{"dot id", "..", []any{"disks", 0, "id"}, `disks[0].id: ".." is not a valid disk id`},
		{"hidden id", ".x", []any{"disks", 0, "id"}, `is not a valid disk id`},
		{"empty id", "", []any{"disks", 0, "id"}, `disks[0].id: "" is not a valid disk id`},
		{"long id", strings.Repeat("a", 65), []any{"disks", 0, "id"}, `is not a valid disk id`},
		{"negative capacity", -1, []any{"disks", 0, "capacity_bytes"}, "disks[0].capacity_bytes: -1 is outside 0..70368744177664"},
		{"absurd capacity", int64(1) << 60, []any{"disks", 0, "capacity_bytes"}, "disks[0].capacity_bytes: 1152921504606846976 is outside"},
		{"unit", -1, []any{"disks", 0, "unit"}, "disks[0].unit: -1 is outside 0..1024"},
		{"digest", "ABC", []any{"disks", 0, "digest"}, `disks[0].digest: "ABC" is not 64 lower-case hex digits`},
		{"mac short", "00:50:56:ab:cd", []any{"nics", 0, "mac"}, `nics[0].mac: "00:50:56:ab:cd" is not of the form xx:xx:xx:xx:xx:xx`},
		{"mac dashes", "00-50-56-ab-cd-ef", []any{"nics", 1, "mac"}, `nics[1].mac: "00-50-56-ab-cd-ef"`},
		{"mac not hex", "00:50:56:ab:cd:eg", []any{"nics", 0, "mac"}, `nics[0].mac`},
		{"unknown field", 1, []any{"memory_mb"}, `unknown field "memory_mb"`},
		{"unknown disk field", true, []any{"disks", 0, "boot"}, `unknown field "boot"`},
		{"disks not a list", "x", []any{"disks"}, "disks: expected []neutral.Disk, found JSON string"},
		{"bad utf8 name", "a\xffb", []any{"name"}, ""}, // json.Marshal replaces it: must still parse
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var doc map[string]any
			require.NoError(t, json.Unmarshal(base, &doc))
			set(t, doc, tc.value, tc.path...)
			data, err := json.Marshal(doc)
			require.NoError(t, err)
			_, err = ParseVM(data, "/x/vm.json")
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.True(t, strings.HasPrefix(err.Error(), "/x/vm.json: "), err.Error())
		})
	}

	raw := []struct {
		name, doc, want string
	}{
		{"empty", "", "empty file"},
		{"syntax", "{\n  \"schema\": 1,\n  \"name\": }", "line 3 column 11: invalid JSON"},
		{"truncated", `{"schema": 1, "name": "x"`, "truncated JSON"},
		{"array", `[1]`, "expected neutral.VM, found JSON array"},
		{"trailing", `{"schema":1,"firmware":"bios","cpus":1,"memory_mib":1} {}`, "unexpected data after the JSON object"},
		{"raw bad utf8", "{\"schema\":1,\"name\":\"a\xffb\",\"firmware\":\"bios\",\"cpus\":1,\"memory_mib\":1}", ""}, // decoded as U+FFFD
		{"huge", strings.Repeat(" ", MaxVMJSONSize+1), "larger than the 16777216-byte limit"},
	}
	for _, tc := range raw {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseVM([]byte(tc.doc), "vm.json")
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

func TestReadVMFileLimits(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "vm.json")
	f, err := os.Create(big)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(MaxVMJSONSize+1)) // sparse: cheap
	require.NoError(t, f.Close())
	_, err = ReadVMFile(big)
	assert.ErrorContains(t, err, "larger than the 16777216-byte limit")
	_, err = ReadVMFile(dir)
	assert.ErrorContains(t, err, "not a regular file")
}

func TestValidateTooManyDevices(t *testing.T) {
	vm := fullVM()
	vm.NICs = make([]NIC, MaxNICs+1)
	assert.ErrorContains(t, vm.Validate(), "nics: 257 entries")
	vm = fullVM()
	vm.Disks = make([]Disk, MaxDisks+1)
	assert.ErrorContains(t, vm.Validate(), "disks: 257 entries")
}
