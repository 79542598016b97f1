package vmx

import (
	"fmt"
	"strconv"
	"strings"
)

// A slot is one device position on a storage controller: VMware's
// `scsi0:1`, `sata0:0`, `nvme0:0`, `ide1:0`. The neutral disk ID is the slot
// name, so a VMware → VMware round trip puts every disk back where it was.
type slot struct {
	bus  string // "ide", "scsi", "sata", "nvme"
	ctrl int
	unit int
}

func (s slot) String() string { return fmt.Sprintf("%s%d:%d", s.bus, s.ctrl, s.unit) }

// controller is the namespace of the slot's controller ("scsi0").
func (s slot) controller() string { return fmt.Sprintf("%s%d", s.bus, s.ctrl) }

// busInfo gives each bus its controller count, unit count and the units
// VMware refuses (SCSI unit 7 is the controller itself). units is also the
// stride of the neutral Unit number: Unit = ctrl*units + unit, so scsi1:0 is
// unit 65 and ide1:0 is unit 2 (hdc, as libvirt and Xen number IDE).
type busInfo struct {
	ctrls, units int
	reserved     int // -1 for none
}

var buses = map[string]busInfo{
	"ide":  {ctrls: 2, units: 2, reserved: -1},
	"scsi": {ctrls: 4, units: 65, reserved: 7}, // 0–6, 8–64 on hardware version 13 and later
	"sata": {ctrls: 4, units: 30, reserved: -1},
	"nvme": {ctrls: 4, units: 64, reserved: -1},
}

// busOrder is the order VMware's BIOS enumerates hard disks when
// bios.hddOrder does not say otherwise: the on-board IDE channels first,
// then the add-in controllers.
var busOrder = []string{"ide", "scsi", "sata", "nvme"}

func (s slot) flatUnit() int { return s.ctrl*buses[s.bus].units + s.unit }

func (s slot) valid() bool {
	b, ok := buses[s.bus]
	return ok && s.ctrl >= 0 && s.ctrl < b.ctrls && s.unit >= 0 && s.unit < b.units && s.unit != b.reserved
}

// less orders slots as VMware enumerates them.
func (s slot) less(t slot) bool {
	if s.bus != t.bus {
		return busRank(s.bus) < busRank(t.bus)
	}
	if s.ctrl != t.ctrl {
		return s.ctrl < t.ctrl
	}
	return s.unit < t.unit
}

func busRank(b string) int {
	for i, x := range busOrder {
		if x == b {
			return i
		}
	}
	return len(busOrder)
}

// parseSlot parses "scsi0:1" (any case). ok is false for names that are not
// storage slots at all (usb_xhci:4); a storage slot out of range is an error.
func parseSlot(ns string) (s slot, ok bool, err error) {
	ns = strings.ToLower(ns)
	colon := strings.IndexByte(ns, ':')
	if colon < 0 {
		return slot{}, false, nil
	}
	i := 0
	for i < colon && ns[i] >= 'a' && ns[i] <= 'z' {
		i++
	}
	bus := ns[:i]
	if _, known := buses[bus]; !known {
		return slot{}, false, nil
	}
	c, err1 := strconv.Atoi(ns[i:colon])
	u, err2 := strconv.Atoi(ns[colon+1:])
	if err1 != nil || err2 != nil || i == colon || colon+1 == len(ns) ||
		!isDigits(ns[i:colon]) || !isDigits(ns[colon+1:]) {
		return slot{}, false, nil
	}
	s = slot{bus: bus, ctrl: c, unit: u}
	if !s.valid() {
		b := buses[bus]
		return s, true, fmt.Errorf("device %s is out of range (%s controllers 0–%d, units 0–%d)",
			ns, bus, b.ctrls-1, b.units-1)
	}
	return s, true, nil
}

// slotFromUnit places a neutral disk by bus and flat unit number.
func slotFromUnit(bus string, unit int) (slot, bool) {
	b, ok := buses[bus]
	if !ok || unit < 0 {
		return slot{}, false
	}
	s := slot{bus: bus, ctrl: unit / b.units, unit: unit % b.units}
	return s, s.valid()
}

func isDigits(s string) bool {
	if s == "" || len(s) > 4 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// namespace returns the device namespace of a key: "scsi0:1" for
// "scsi0:1.fileName", "ethernet0" for "ethernet0.address", "" for keys
// without a dot.
func namespace(key string) string {
	i := strings.IndexByte(key, '.')
	if i <= 0 {
		return ""
	}
	return key[:i]
}

// ethernetIndex parses "ethernet3"; ok is false for other namespaces.
func ethernetIndex(ns string) (int, bool) {
	ns = strings.ToLower(ns)
	if !strings.HasPrefix(ns, "ethernet") || !isDigits(ns[len("ethernet"):]) {
		return 0, false
	}
	n, _ := strconv.Atoi(ns[len("ethernet"):])
	return n, n < maxNICs
}

// maxNICs is VMware's limit (ethernet0–ethernet9).
const maxNICs = 10
