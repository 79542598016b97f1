package vmx

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/formats/neutral"
)

// Random VMs from elsewhere survive FromVM → ToVM: hardware, MACs,
// networks, one disk per disk, the same boot disk.
func TestRandomForeignVMs(t *testing.T) {
	r := rand.New(rand.NewSource(42))
	busesIn := []string{"xen", "virtio", "ide", "scsi", "sata", "nvme", ""}
	for n := 0; n < 300; n++ {
		cpus := 1 + r.Intn(16)
		vm := &neutral.VM{Schema: 1, Name: fmt.Sprintf("vm%d", n), CPUs: cpus, CoresPerSocket: 1,
			MemoryMiB: int64(1 + r.Intn(65536)), Firmware: []string{"bios", "uefi"}[r.Intn(2)]}
		if cpus%2 == 0 && r.Intn(2) == 0 {
			vm.CoresPerSocket = 2
		}
		if r.Intn(2) == 0 {
			vm.UUID = fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", r.Uint32(), r.Intn(1<<16), r.Intn(1<<16), r.Intn(1<<16), r.Int63n(1<<48))
		}
		nd := r.Intn(6)
		boot := -1
		for i := 0; i < nd; i++ {
			d := neutral.Disk{ID: fmt.Sprintf("d%d", i), Device: "disk", Bus: busesIn[r.Intn(len(busesIn))], Unit: r.Intn(70)}
			if r.Intn(4) == 0 {
				d.Device, d.ReadOnly = "cdrom", true
			}
			if d.Device == "disk" && boot < 0 && r.Intn(2) == 0 {
				d.Bootable, boot = true, i
			}
			vm.Disks = append(vm.Disks, d)
		}
		for i := r.Intn(5); i > 0; i-- {
			mac := fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", r.Intn(256)&^1, r.Intn(256), r.Intn(256), r.Intn(256), r.Intn(256), r.Intn(256))
			vm.NICs = append(vm.NICs, neutral.NIC{MAC: mac, Network: fmt.Sprintf("net %d", r.Intn(3)), Model: []string{"", "netfront", "e1000", "vmxnet3"}[r.Intn(4)]})
		}
		f, err := FromVM(vm, "v", WriteOptions{})
		require.NoError(t, err, "vm %d", n)
		back, err := ToVM(f)
		require.NoError(t, err, "vm %d:\n%s", n, f.Marshal())

		assert.Equal(t, vm.CPUs, back.CPUs)
		assert.Equal(t, vm.CoresPerSocket, back.CoresPerSocket)
		assert.Equal(t, (vm.MemoryMiB+3)&^3, back.MemoryMiB)
		assert.Equal(t, vm.Firmware, back.Firmware)
		assert.Equal(t, vm.UUID, back.UUID)
		require.Len(t, back.NICs, len(vm.NICs))
		for i := range vm.NICs {
			assert.Equal(t, vm.NICs[i].MAC, back.NICs[i].MAC)
			assert.Equal(t, vm.NICs[i].Network, back.NICs[i].Network)
		}
		require.Len(t, back.Disks, len(vm.Disks), "vm %d:\n%s", n, f.Marshal())
		// The k-th hard disk is written as v.vmdk / v_k.vmdk: find the
		// boot disk by its file.
		bootFile := ""
		k := 0
		for i, d := range vm.Disks {
			if d.Device != "disk" {
				continue
			}
			if i == boot {
				bootFile = "v.vmdk"
				if k > 0 {
					bootFile = fmt.Sprintf("v_%d.vmdk", k)
				}
			}
			k++
		}
		slotOf := map[string]string{} // neutral id -> VMX slot
		for _, e := range f.Entries() {
			if slot, ok := strings.CutSuffix(e.Key, DiskIDSuffix); ok {
				slotOf[e.Value] = slot
			}
		}
		for _, d := range back.Disks {
			slot := d.ID
			if s, ok := slotOf[d.ID]; ok {
				slot = s
			}
			fn, _ := f.Get(slot + ".fileName")
			if boot >= 0 {
				assert.Equal(t, fn == bootFile, d.Bootable, "vm %d disk %s (%s):\n%s", n, d.ID, fn, f.Marshal())
			}
		}
	}
}
