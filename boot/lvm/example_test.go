package lvm_test

import (
	"fmt"
	"os"

	"github.com/vmconv/vmconv/boot/lvm"
)

// Every disk (or partition) of a machine is probed; the PVs found are
// assembled into their VGs, whose LVs can then be read like disks.
func Example() {
	f, err := os.Open("testdata/pv-head.img") // a PV's first 64 KiB
	if err != nil {
		panic(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pv, err := lvm.ReadPV(f, st.Size())
	if err != nil { // lvm.ErrNoLabel: not a PV
		panic(err)
	}
	vgs, err := lvm.AssembleAll([]*lvm.PV{pv})
	if err != nil {
		panic(err)
	}
	for _, vg := range vgs {
		for _, lv := range vg.LVs() {
			// The fixture holds no extents, so the LVs are past its end.
			fmt.Printf("%s/%s %d MiB %v readable=%v\n", vg.Name, lv.Name, lv.Size>>20, lv.SegmentTypes(), lv.Err == nil)
		}
	}
	// Output:
	// vgfix/root 5 MiB [striped] readable=false
	// vgfix/boot 2 MiB [striped] readable=false
}
