package vmx

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A NIC model vmconv does not know stays as the source VMX had it while the
// neutral model is unchanged; a changed or foreign model becomes e1000.
func TestSourceNICModelKept(t *testing.T) {
	src := "ethernet0.present = \"TRUE\"\nethernet0.virtualDev = \"vrdma\"\n" +
		"ethernet1.present = \"TRUE\"\nethernet1.virtualDev = \"vmxnet3\"\n"
	for _, tc := range []struct {
		name         string
		models       []string // the neutral models set before writing; nil: as read
		want0, want1 string
	}{
		{"as read", nil, "vrdma", "vmxnet3"},
		{"changed to a VMware model", []string{"e1000e", "vmxnet3"}, "e1000e", "vmxnet3"},
		{"changed to a foreign model", []string{"virtio", "netfront"}, "e1000", "e1000"},
		{"changed in case only", []string{"VRDMA", "vmxnet3"}, "e1000", "vmxnet3"},
		{"moved to the other NIC", []string{"vmxnet3", "vrdma"}, "vmxnet3", "e1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(strings.NewReader(src), "src.vmx")
			require.NoError(t, err)
			vm, err := ToVM(f)
			require.NoError(t, err)
			require.Len(t, vm.NICs, 2)
			assert.Equal(t, "vrdma", vm.NICs[0].Model)
			for i, m := range tc.models {
				vm.NICs[i].Model = m
			}
			out, err := FromVM(vm, "out", WriteOptions{})
			require.NoError(t, err)
			got0, _ := out.Get("ethernet0.virtualDev")
			got1, _ := out.Get("ethernet1.virtualDev")
			assert.Equal(t, tc.want0, got0, "%s", out.Marshal())
			assert.Equal(t, tc.want1, got1, "%s", out.Marshal())
		})
	}
}
