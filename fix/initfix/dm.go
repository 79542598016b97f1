//go:build linux

package initfix

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vmconv/vmconv/boot/lvm"
)

// The fixer activates an LV itself, as `lvchange -ay` would, with the
// device-mapper ioctls (linux/dm-ioctl.h, interface version 4): the
// guest's lvm binary is inside the LV, and the initramfs carries only
// vmconv. The table comes from boot/lvm, read from the PVs found on the
// block devices.

const (
	dmIoctlSize  = 312 // sizeof(struct dm_ioctl)
	dmTargetSize = 40  // sizeof(struct dm_target_spec)
	dmNameLen    = 128
	dmUUIDLen    = 129

	dmDevCreate  = 3
	dmDevSuspend = 6 // without DM_SUSPEND_FLAG: resume, making the loaded table live
	dmTableLoad  = 9
)

// dmIoctl is struct dm_ioctl.
type dmIoctl struct {
	Version     [3]uint32
	DataSize    uint32
	DataStart   uint32
	TargetCount uint32
	OpenCount   int32
	Flags       uint32
	EventNr     uint32
	_           uint32
	Dev         uint64
	Name        [dmNameLen]byte
	UUID        [dmUUIDLen]byte
	_           [7]byte
}

// dmTargetSpec is struct dm_target_spec; its parameter string follows it.
type dmTargetSpec struct {
	SectorStart uint64
	Length      uint64
	Status      int32
	Next        uint32 // bytes from this spec's start to the next one's
	TargetType  [16]byte
}

func init() {
	if unsafe.Sizeof(dmIoctl{}) != dmIoctlSize || unsafe.Sizeof(dmTargetSpec{}) != dmTargetSize {
		panic("initfix: device-mapper ioctl structures have the wrong size")
	}
}

// dmCmd is _IOWR(0xfd, nr, struct dm_ioctl).
func dmCmd(nr uintptr) uintptr { return 3<<30 | dmIoctlSize<<16 | 0xfd<<8 | nr }

// dmCall sends one ioctl: the header for name (and uuid), then payload.
func dmCall(ctl *os.File, nr uintptr, name, uuid string, targets uint32, payload []byte) (*dmIoctl, error) {
	h := dmIoctl{Version: [3]uint32{4, 0, 0}, DataStart: dmIoctlSize, TargetCount: targets}
	copy(h.Name[:dmNameLen-1], name)
	copy(h.UUID[:dmUUIDLen-1], uuid)
	// Room for what the kernel writes back after the header.
	buf := make([]byte, dmIoctlSize+max(len(payload), 16<<10))
	h.DataSize = uint32(len(buf))
	var hb bytes.Buffer
	binary.Write(&hb, binary.NativeEndian, &h)
	copy(buf, hb.Bytes())
	copy(buf[dmIoctlSize:], payload)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, ctl.Fd(), dmCmd(nr), uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
		return nil, errno
	}
	var out dmIoctl
	binary.Read(bytes.NewReader(buf[:dmIoctlSize]), binary.NativeEndian, &out)
	return &out, nil
}

// dmTable encodes the targets for DM_TABLE_LOAD.
func dmTable(m *lvm.Mapping, dev func(string) string) []byte {
	var b bytes.Buffer
	for _, t := range m.Targets {
		typ, params := t.Params(dev)
		n := dmTargetSize + len(params) + 1
		n = (n + 7) &^ 7 // each spec 8-byte aligned
		spec := dmTargetSpec{SectorStart: t.Start, Length: t.Length, Next: uint32(n)}
		copy(spec.TargetType[:15], typ)
		start := b.Len()
		binary.Write(&b, binary.NativeEndian, &spec)
		b.WriteString(params)
		b.Write(make([]byte, n-(b.Len()-start)))
	}
	return b.Bytes()
}

// lvMapping finds the PVs on the block devices and returns the table of
// the LV "vg/lv", with each PV's device as "MAJ:MIN".
func lvMapping(vgLV string) (*lvm.Mapping, map[string]string, error) {
	vgName, lvName, ok := strings.Cut(vgLV, "/")
	if !ok {
		return nil, nil, fmt.Errorf("LV %q: not vg/lv", vgLV)
	}
	pvs, devs, files, err := findPVs()
	for _, f := range files {
		defer f.Close() // the metadata is read; the table names devices by number
	}
	if err != nil {
		return nil, nil, err
	}
	vgs, err := lvm.AssembleAll(pvs)
	if err != nil {
		return nil, nil, err
	}
	for _, vg := range vgs {
		if vg.Name == vgName {
			m, err := vg.Mapping(lvName)
			return m, devs, err
		}
	}
	return nil, nil, fmt.Errorf("no VG %s on the %d PVs found", vgName, len(pvs))
}

// activate maps the LV with device-mapper under LVM's own name and UUID
// and returns its /dev/mapper path (a link to the /dev/dm-N node that
// devtmpfs makes).
func activate(m *lvm.Mapping, devs map[string]string) (string, error) {
	ctl, err := os.OpenFile("/dev/mapper/control", os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("device-mapper (is dm_mod loaded?): %w", err)
	}
	defer ctl.Close()
	created, err := dmCall(ctl, dmDevCreate, m.Name, m.UUID, 0, nil)
	if err != nil {
		return "", fmt.Errorf("creating %s: %w", m.Name, err)
	}
	table := dmTable(m, func(pv string) string { return devs[pv] })
	if _, err := dmCall(ctl, dmTableLoad, m.Name, "", uint32(len(m.Targets)), table); err != nil {
		return "", fmt.Errorf("loading the table of %s: %w", m.Name, err)
	}
	if _, err := dmCall(ctl, dmDevSuspend, m.Name, "", 0, nil); err != nil {
		return "", fmt.Errorf("resuming %s: %w", m.Name, err)
	}
	// huge_encode_dev: minor's low byte, major, then minor's high bits.
	minor := created.Dev&0xff | created.Dev>>12&^0xff
	node := fmt.Sprintf("/dev/dm-%d", minor)
	link := "/dev/mapper/" + m.Name
	os.Remove(link)
	if err := os.Symlink("../"+filepath.Base(node), link); err != nil {
		return "", err
	}
	return link, nil
}

// findPVs reads the LVM label of every block device; devs maps each PV's
// UUID to its device's "MAJ:MIN". The PVs' files are returned open, for
// the caller to close once it has what it needs of them.
func findPVs() (pvs []*lvm.PV, devs map[string]string, files []*os.File, err error) {
	devs = map[string]string{}
	names, _ := filepath.Glob("/sys/class/block/*")
	for _, n := range names {
		num, err := os.ReadFile(filepath.Join(n, "dev"))
		if err != nil {
			continue
		}
		f, err := os.Open("/dev/" + filepath.Base(n))
		if err != nil {
			continue
		}
		size, err := f.Seek(0, 2)
		if err != nil || size == 0 {
			f.Close()
			continue
		}
		pv, err := lvm.ReadPV(f, size)
		if err != nil {
			f.Close() // ErrNoLabel, or a PV that could not be read: not ours
			continue
		}
		pvs = append(pvs, pv)
		files = append(files, f)
		devs[pv.UUID] = strings.TrimSpace(string(num))
	}
	if len(pvs) == 0 {
		return nil, nil, files, fmt.Errorf("no LVM physical volume on any block device")
	}
	return pvs, devs, files, nil
}
