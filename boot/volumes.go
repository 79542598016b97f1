package boot

import (
	"github.com/vmconv/vmconv/disk"
)

// FS is what can be read from a guest's filesystem: paths are absolute
// within it, symbolic links followed.
type FS interface {
	ReadFile(name string, max int64) ([]byte, error)
	ReadDir(name string) ([]string, error)
	Stat(name string) (size int64, dir bool, err error)
}

// Volume is one filesystem found on one of the VM's disks.
type Volume struct {
	Disk      int    `json:"disk"`         // index into the disks given to Volumes
	Partition int    `json:"partition"`    // Linux numbering; 0 = the whole disk
	LV        string `json:"lv,omitempty"` // "vg/lv" for a filesystem in an LVM logical volume
	PartType  string `json:"part_type,omitempty"`
	FSType    string `json:"fs"` // "ext4", "fat32", ...
	UUID      string `json:"uuid,omitempty"`
	Label     string `json:"label,omitempty"`
	PartUUID  string `json:"partuuid,omitempty"`
	Table     string `json:"table,omitempty"` // "mbr", "gpt" or ""
	// Subvolume is, for a btrfs without a default subvolume, the one that
	// holds the system (Ubuntu's "@"): it must be named to mount it.
	Subvolume string `json:"subvolume,omitempty"`
	FS        FS     `json:"-"`
}

// exported gives a filesystem's unexported readDir the exported name.
type exported struct{ filesystem }

func (e exported) ReadDir(name string) ([]string, error) { return e.readDir(name) }

// Volumes lists the filesystems on the disks that the boot finder reads,
// in the order it scans them; notes say what was not usable.
func Volumes(disks []disk.Image) ([]Volume, []string) {
	perDisk, notes := scanDisks(disks)
	var vols []Volume
	for _, vs := range perDisk {
		for _, v := range vs {
			vols = append(vols, Volume{Disk: v.disk, Partition: v.part, LV: v.lv, PartType: v.partType, FSType: v.fsType,
				UUID: v.uuid, Label: v.label, PartUUID: v.partUUID, Table: v.tableKind, FS: exported{v.fs}})
			if b, ok := v.fs.(btrfsFS); ok {
				vols[len(vols)-1].Subvolume = b.subvol
			}
		}
	}
	return vols, notes
}
