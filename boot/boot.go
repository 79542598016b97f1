// Package boot finds how a guest boots from its own disks, read-only, as a
// Xen PV bootloader does: partition table, filesystem, boot loader
// configuration, kernel and initrd.
//
// Partition tables are read by boot/part (MBR with extended partitions, GPT),
// filesystems by boot/ext4, boot/fat, boot/xfs and boot/btrfs, inside LVM
// logical volumes by boot/lvm (our own small read-only readers; see their
// package comments for why not go-diskfs or another library). Configurations are tried in
// the order a real boot uses them: GRUB 2 grub.cfg, BLS entries, extlinux and
// syslinux, GRUB legacy menu.lst, and the /vmlinuz links last.
package boot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/vmconv/vmconv/boot/btrfs"
	"github.com/vmconv/vmconv/boot/ext4"
	"github.com/vmconv/vmconv/boot/fat"
	"github.com/vmconv/vmconv/boot/lvm"
	"github.com/vmconv/vmconv/boot/part"
	"github.com/vmconv/vmconv/boot/xfs"
	"github.com/vmconv/vmconv/disk"
)

// Limits on what is read from a guest.
const (
	MaxKernelSize = 256 << 20
	MaxInitrdSize = 512 << 20
	maxConfigSize = 1 << 20
)

// Entry is how a guest boots: what its boot loader would load.
type Entry struct {
	Kernel []byte `json:"-"`
	Initrd []byte `json:"-"`

	KernelPath string `json:"kernel_path"`
	InitrdPath string `json:"initrd_path,omitempty"` // several initrds are joined by spaces and concatenated in Initrd
	// Cmdline is the command line as the configuration gives it;
	// AdjustedCmdline is it made ready for the VMM (see AdjustCmdline).
	Cmdline         string `json:"cmdline"`
	AdjustedCmdline string `json:"adjusted_cmdline"`
	Config          string `json:"config"` // the file that decided, e.g. "disk 0 partition 1: /boot/grub/grub.cfg"
	Title           string `json:"title,omitempty"`
	Disk            int    `json:"disk"`         // index into the disks given to Find
	Partition       int    `json:"partition"`    // the kernel's partition (Linux numbering); 0 = whole disk
	LV              string `json:"lv,omitempty"` // "vg/lv" when the kernel is in an LVM logical volume
	FS              string `json:"fs"`           // "ext4", "fat16", ...
	// Skipped lists configurations found before this one that did not load
	// (a grub.cfg whose default entry names a missing kernel, say).
	Skipped []string `json:"skipped,omitempty"`
}

// filesystem is what the configuration readers need from a volume.
type filesystem interface {
	ReadFile(name string, max int64) ([]byte, error)
	readDir(name string) ([]string, error)
	Stat(name string) (size int64, dir bool, err error)
}

func exists(f filesystem, name string) bool { _, _, err := f.Stat(name); return err == nil }

// entryNames lists the names of a reader's directory entries, for readDir.
func entryNames[E any](ents []E, err error, name func(E) string) ([]string, error) {
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ents))
	for i, d := range ents {
		out[i] = name(d)
	}
	return out, nil
}

type extFS struct{ *ext4.FS }

func (e extFS) readDir(name string) ([]string, error) {
	ents, err := e.FS.ReadDir(name)
	return entryNames(ents, err, func(d ext4.DirEntry) string { return d.Name })
}

type fatFS struct{ *fat.FS }

func (f fatFS) readDir(name string) ([]string, error) {
	ents, err := f.FS.ReadDir(name)
	return entryNames(ents, err, func(d fat.DirEntry) string { return d.Name })
}

// volume is one filesystem on one of the VM's disks.
type volume struct {
	disk, part int // part 0: whole disk
	partType   string
	fsType     string
	uuid       string
	label      string
	partUUID   string
	tableKind  string // "mbr", "gpt" or ""
	lv         string // "vg/lv" for a filesystem in an LVM logical volume
	fs         filesystem
}

func (v *volume) String() string {
	if v.lv != "" {
		return "LV " + v.lv
	}
	if v.part == 0 {
		return fmt.Sprintf("disk %d", v.disk)
	}
	return fmt.Sprintf("disk %d partition %d", v.disk, v.part)
}

// grubName is the GRUB device name of the volume: "hd0,msdos1", "hd1,gpt2", "hd0".
func (v *volume) grubName() string {
	switch {
	case v.lv != "":
		vg, lv, _ := strings.Cut(v.lv, "/")
		return "lvm/" + strings.ReplaceAll(vg, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
	case v.part == 0:
		return fmt.Sprintf("hd%d", v.disk)
	case v.tableKind == "gpt":
		return fmt.Sprintf("hd%d,gpt%d", v.disk, v.part)
	}
	return fmt.Sprintf("hd%d,msdos%d", v.disk, v.part)
}

// section is a region of a disk read as its own device.
type section struct {
	r        io.ReaderAt
	off, len int64
}

func (s section) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= s.len {
		return 0, io.EOF
	}
	if rem := s.len - off; int64(len(p)) > rem {
		n, err := s.r.ReadAt(p[:rem], s.off+off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return s.r.ReadAt(p, s.off+off)
}

// fsOpener opens one kind of filesystem, or says why r does not hold one.
type fsOpener func(r io.ReaderAt, size int64) (fsys filesystem, typ, uuid, label string, err error)

// fsOpeners are tried in turn; each checks its own magic first.
var fsOpeners = []fsOpener{openExt, openFAT, openXFS, openBtrfs}

// openFS recognises the filesystem in r.
func openFS(r io.ReaderAt, size int64) (filesystem, string, string, string, error) {
	var errs []string
	for _, open := range fsOpeners {
		fsys, typ, uuid, label, err := open(r, size)
		if err == nil {
			return fsys, typ, uuid, label, nil
		}
		errs = append(errs, err.Error())
	}
	return nil, "", "", "", fmt.Errorf("no ext2/3/4, FAT, XFS or btrfs filesystem (%s)", strings.Join(errs, "; "))
}

func openExt(r io.ReaderAt, size int64) (filesystem, string, string, string, error) {
	e, err := ext4.Open(r, size)
	if err != nil {
		return nil, "", "", "", err
	}
	t := "ext2"
	sb := e.Superblock()
	switch {
	case sb.FeatureIncompat&0x2c0 != 0: // extents, 64bit, flex_bg
		t = "ext4"
	case sb.FeatureCompat&0x4 != 0: // has_journal
		t = "ext3"
	}
	return extFS{e}, t, e.UUID(), e.Label(), nil
}

func openFAT(r io.ReaderAt, size int64) (filesystem, string, string, string, error) {
	f, err := fat.Open(r, size)
	if err != nil {
		return nil, "", "", "", err
	}
	return fatFS{f}, fmt.Sprintf("fat%d", f.Type), f.UUID(), f.Label(), nil
}

func openXFS(r io.ReaderAt, size int64) (filesystem, string, string, string, error) {
	x, err := xfs.Open(r, size)
	if err != nil {
		return nil, "", "", "", err
	}
	return xfsFS{x}, "xfs", x.UUID(), x.Label(), nil
}

type xfsFS struct{ *xfs.FS }

func (x xfsFS) readDir(name string) ([]string, error) {
	ents, err := x.FS.ReadDir(name)
	return entryNames(ents, err, func(d xfs.DirEntry) string { return d.Name })
}

func openBtrfs(r io.ReaderAt, size int64) (filesystem, string, string, string, error) {
	b, err := btrfs.Open(r, size)
	if err != nil {
		return nil, "", "", "", err
	}
	top, err := b.SubvolumeID(5)
	if err != nil {
		top = nil
	}
	def, subvol := b, ""
	if b.ID() == 5 {
		// No default subvolume set (Ubuntu's @, Fedora's root): the
		// system lives in a subvolume the kernel mounts by rootflags.
		if sub, path := systemSubvolume(b); sub != nil {
			def, subvol = sub, path
		}
	}
	if top != nil && top.ID() == def.ID() {
		top = nil
	}
	return btrfsFS{def: def, top: top, subvol: subvol}, "btrfs", b.UUID(), b.Label(), nil
}

// systemSubvolume returns the first subvolume directly under the top level
// that holds /etc/fstab, else /boot, and its path; nil if none does.
func systemSubvolume(top *btrfs.FS) (*btrfs.FS, string) {
	subs, err := top.Subvolumes()
	if err != nil {
		return nil, ""
	}
	for _, probe := range []string{"/etc/fstab", "/boot"} {
		for _, s := range subs {
			if s.Parent != 5 {
				continue
			}
			fsys, err := top.SubvolumeID(s.ID)
			if err != nil {
				continue
			}
			if _, _, err := fsys.Stat(probe); err == nil {
				return fsys, s.Path
			}
		}
	}
	return nil, ""
}

// btrfsFS reads paths in the default subvolume, and failing that from the
// top level: GRUB's configurations name files either way ("/boot/vmlinuz"
// in openSUSE's default-subvolume setups, "/@/boot/vmlinuz" or
// "/root/boot/vmlinuz" where GRUB reads from the top level).
type btrfsFS struct {
	def, top *btrfs.FS
	// subvol is the path of def when it is not the default subvolume:
	// mounting the system needs subvol=<it>.
	subvol string
}

func (b btrfsFS) ReadFile(name string, max int64) ([]byte, error) {
	data, err := b.def.ReadFile(name, max)
	if errors.Is(err, fs.ErrNotExist) && b.top != nil {
		return b.top.ReadFile(name, max)
	}
	return data, err
}

func (b btrfsFS) Stat(name string) (int64, bool, error) {
	size, dir, err := b.def.Stat(name)
	if errors.Is(err, fs.ErrNotExist) && b.top != nil {
		return b.top.Stat(name)
	}
	return size, dir, err
}

func (b btrfsFS) readDir(name string) ([]string, error) {
	ents, err := b.def.ReadDir(name)
	if errors.Is(err, fs.ErrNotExist) && b.top != nil {
		ents, err = b.top.ReadDir(name)
	}
	return entryNames(ents, err, func(d btrfs.DirEntry) string { return d.Name })
}

// lvmPartTypes are the partition types an LVM physical volume is given.
var lvmPartTypes = map[string]bool{"0x8e": true, part.GPTTypeLVM: true}

// diskPV is an LVM physical volume found on one of the VM's disks.
type diskPV struct {
	disk int
	pv   *lvm.PV
}

// scanDisk lists the filesystems of a disk, and the LVM physical volumes on
// it; notes say what was not usable.
func scanDisk(i int, img disk.Image) (vols []*volume, pvs []diskPV, notes []string) {
	size := img.Size()
	t, err := part.Read(img, size)
	if err != nil {
		if !errors.Is(err, part.ErrNoTable) {
			notes = append(notes, fmt.Sprintf("disk %d: %v", i, err))
		}
		if pv, perr := lvm.ReadPV(img, size); perr == nil {
			return nil, []diskPV{{i, pv}}, notes
		}
		fsys, typ, uuid, label, ferr := openFS(img, size)
		if ferr != nil {
			notes = append(notes, fmt.Sprintf("disk %d: no partition table, and %v", i, ferr))
			return nil, nil, notes
		}
		return []*volume{{disk: i, fsType: typ, uuid: uuid, label: label, fs: fsys}}, nil, notes
	}
	if len(t.Partitions) == 0 {
		notes = append(notes, fmt.Sprintf("disk %d: %s partition table with no partitions", i, t.Kind))
	}
	ps := append([]part.Partition(nil), t.Partitions...)
	// The active (MBR) partition first, as a BIOS boots it; otherwise in order.
	sort.SliceStable(ps, func(a, b int) bool { return ps[a].Bootable && !ps[b].Bootable && t.Kind == "mbr" })
	for _, p := range ps {
		if p.Type == part.GPTTypeBIOSBoot || p.Type == "0x82" {
			continue // BIOS boot, swap: nothing GRUB's configuration lives in
		}
		sec := section{img, p.Start, p.Size}
		// A PV is looked for on any partition (installers do not always
		// set the LVM type); the label sits in the first four sectors.
		pv, perr := lvm.ReadPV(sec, p.Size)
		if perr == nil {
			pvs = append(pvs, diskPV{i, pv})
			continue
		}
		if lvmPartTypes[p.Type] {
			notes = append(notes, fmt.Sprintf("disk %d partition %d (LVM): %v", i, p.Index, perr))
			continue
		}
		fsys, typ, uuid, label, ferr := openFS(sec, p.Size)
		if ferr != nil {
			notes = append(notes, fmt.Sprintf("disk %d partition %d (type %s): %v", i, p.Index, p.Type, ferr))
			continue
		}
		vols = append(vols, &volume{disk: i, part: p.Index, partType: p.Type, fsType: typ, uuid: uuid,
			label: label, partUUID: p.UUID, tableKind: t.Kind, fs: fsys})
	}
	return vols, pvs, notes
}

// scanDisks lists the filesystems of every disk, then those in the LVM
// logical volumes whose PVs the disks hold. An LV's filesystem is listed
// with the disk of its volume group's first PV.
func scanDisks(disks []disk.Image) (perDisk [][]*volume, notes []string) {
	perDisk = make([][]*volume, len(disks))
	var pvs []diskPV
	for i, d := range disks {
		vols, dpvs, ns := scanDisk(i, d)
		perDisk[i] = vols
		pvs = append(pvs, dpvs...)
		notes = append(notes, ns...)
	}
	if len(pvs) == 0 {
		return perDisk, notes
	}
	lvVols, ns := scanLVs(pvs)
	notes = append(notes, ns...)
	for _, v := range lvVols {
		perDisk[v.disk] = append(perDisk[v.disk], v)
	}
	return perDisk, notes
}

// isSwap reports whether a volume holds Linux swap (its signature ends the
// first 4 KiB page), which has no files to read.
func isSwap(r io.ReaderAt) bool {
	sig := make([]byte, 10)
	_, err := r.ReadAt(sig, 4096-10)
	return err == nil && string(sig) == "SWAPSPACE2"
}

// scanLVs assembles the volume groups of pvs and opens the filesystem of
// each visible logical volume.
func scanLVs(pvs []diskPV) (vols []*volume, notes []string) {
	diskOf := map[string]int{} // PV UUID without dashes -> disk
	raw := make([]*lvm.PV, len(pvs))
	for i, p := range pvs {
		raw[i] = p.pv
		if _, ok := diskOf[p.pv.UUID]; !ok {
			diskOf[p.pv.UUID] = p.disk
		}
	}
	vgs, err := lvm.AssembleAll(raw)
	if err != nil {
		return nil, []string{fmt.Sprintf("LVM: %v", err)}
	}
	for _, vg := range vgs {
		d := pvs[0].disk
		for _, pi := range vg.PVs {
			if n, ok := diskOf[strings.ReplaceAll(pi.ID, "-", "")]; ok {
				d = n
				break
			}
		}
		for _, lv := range vg.LVs() {
			name := vg.Name + "/" + lv.Name
			if !lv.Visible() {
				continue
			}
			if lv.Err != nil {
				notes = append(notes, fmt.Sprintf("LV %s: %v", name, lv.Err))
				continue
			}
			r, size, err := vg.Open(lv.Name)
			if err != nil {
				notes = append(notes, fmt.Sprintf("LV %s: %v", name, err))
				continue
			}
			if isSwap(r) {
				continue
			}
			fsys, typ, uuid, label, ferr := openFS(r, size)
			if ferr != nil {
				notes = append(notes, fmt.Sprintf("LV %s: %v", name, ferr))
				continue
			}
			vols = append(vols, &volume{disk: d, lv: name, fsType: typ, uuid: uuid, label: label, fs: fsys})
		}
	}
	return vols, notes
}

// Find returns how the VM boots from its disks: the first disk with a boot
// configuration (or kernel) that loads wins. The error of a VM with no kernel
// says what was searched.
func Find(disks []disk.Image) (*Entry, error) {
	if len(disks) == 0 {
		return nil, errors.New("boot: no disks")
	}
	perDisk, searched := scanDisks(disks)
	var all []*volume
	for _, vols := range perDisk {
		all = append(all, vols...)
	}
	var skipped []string
	for i := range disks {
		for _, src := range sources {
			for _, v := range perDisk[i] {
				e, tried, err := src(v, all)
				if e != nil {
					e.AdjustedCmdline = AdjustCmdline(e.Cmdline, len(disks))
					e.Skipped = skipped
					return e, nil
				}
				if err != nil {
					skipped = append(skipped, fmt.Sprintf("%s (%s): %v", v, v.fsType, err))
					searched = append(searched, fmt.Sprintf("%s (%s): %v", v, v.fsType, err))
				} else if tried != "" {
					searched = append(searched, fmt.Sprintf("%s (%s): %s", v, v.fsType, tried))
				}
			}
		}
	}
	return nil, fmt.Errorf("boot: no kernel found on %d disk(s): %s", len(disks), strings.Join(searched, "; "))
}

// A source looks for one kind of configuration on a volume. It returns the
// entry, or what it looked for (when nothing was there), or why what it found
// did not load.
type source func(v *volume, all []*volume) (*Entry, string, error)

var sources = []source{findGrub2, findBLS, findExtlinux, findGrubLegacy, findLinks}

// loaded is what a configuration chose, before the files are read.
type loaded struct {
	kernelVol  *volume
	kernel     string
	initrdVols []*volume
	initrds    []string
	cmdline    string
	title      string
	config     string
	multiboot  bool  // a multiboot kernel (Xen): Linux comes as its first module
	chain      bool  // chain-loads another boot loader
	err        error // a path the entry named did not resolve
}

// load reads the kernel and initrds a configuration named.
func (l *loaded) load() (*Entry, error) {
	k, err := l.kernelVol.fs.ReadFile(l.kernel, MaxKernelSize)
	if err != nil {
		return nil, fmt.Errorf("%s: kernel %s on %s: %w", l.config, l.kernel, l.kernelVol, err)
	}
	e := &Entry{Kernel: k, KernelPath: l.kernel, Cmdline: strings.TrimSpace(l.cmdline), Config: l.config,
		Title: l.title, Disk: l.kernelVol.disk, Partition: l.kernelVol.part, LV: l.kernelVol.lv, FS: l.kernelVol.fsType}
	var names []string
	for i, p := range l.initrds {
		v := l.initrdVols[i]
		b, err := v.fs.ReadFile(p, MaxInitrdSize-int64(len(e.Initrd)))
		if err != nil {
			return nil, fmt.Errorf("%s: initrd %s on %s: %w", l.config, p, v, err)
		}
		e.Initrd = append(e.Initrd, b...)
		names = append(names, p)
	}
	e.InitrdPath = strings.Join(names, " ")
	return e, nil
}

func readConfig(v *volume, name string) ([]byte, bool) {
	b, err := v.fs.ReadFile(name, maxConfigSize)
	if err != nil {
		return nil, false
	}
	return b, true
}

// findLinks is the last resort: the /vmlinuz and /boot/vmlinuz links Debian
// keeps (or the newest /boot/vmlinuz-VERSION), with the initrd beside them and
// a command line that mounts this filesystem as root.
func findLinks(v *volume, all []*volume) (*Entry, string, error) {
	type pair struct{ k, i string }
	cands := []pair{{"/vmlinuz", "/initrd.img"}, {"/boot/vmlinuz", "/boot/initrd.img"}}
	for _, dir := range []string{"/boot", "/"} {
		names, err := v.fs.readDir(dir)
		if err != nil {
			continue
		}
		var vers []string
		for _, n := range names {
			if strings.HasPrefix(n, "vmlinuz-") {
				vers = append(vers, strings.TrimPrefix(n, "vmlinuz-"))
			}
		}
		sort.Slice(vers, func(a, b int) bool { return vercmp(vers[a], vers[b]) > 0 })
		for _, ver := range vers {
			cands = append(cands, pair{path.Join(dir, "vmlinuz-"+ver), path.Join(dir, "initrd.img-"+ver)},
				pair{path.Join(dir, "vmlinuz-"+ver), path.Join(dir, "initramfs-"+ver+".img")})
		}
	}
	for _, c := range cands {
		if !exists(v.fs, c.k) {
			continue
		}
		l := &loaded{kernelVol: v, kernel: c.k, config: fmt.Sprintf("%s: %s (no boot loader configuration)", v, c.k)}
		if exists(v.fs, c.i) {
			l.initrdVols, l.initrds = []*volume{v}, []string{c.i}
		}
		root := rootFor(v, all)
		if root != nil {
			l.cmdline = "root=UUID=" + root.uuid + " ro"
		}
		e, err := l.load()
		return e, "", err
	}
	return nil, "no /vmlinuz, /boot/vmlinuz or /boot/vmlinuz-*", nil
}

// rootFor guesses the root filesystem of a kernel found without a
// configuration: the volume itself when it holds /etc/fstab, else the first
// one that does.
func rootFor(v *volume, all []*volume) *volume {
	if exists(v.fs, "/etc/fstab") {
		return v
	}
	for _, o := range all {
		if exists(o.fs, "/etc/fstab") && strings.HasPrefix(o.fsType, "ext") {
			return o
		}
	}
	return nil
}

// String describes the entry in a few lines, for `vmconv info`.
func (e *Entry) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "config:  %s\n", e.Config)
	if e.Title != "" {
		fmt.Fprintf(&b, "entry:   %s\n", e.Title)
	}
	where := fmt.Sprintf("disk %d partition %d", e.Disk, e.Partition)
	if e.LV != "" {
		where = fmt.Sprintf("LV %s on disk %d", e.LV, e.Disk)
	}
	fmt.Fprintf(&b, "kernel:  %s (%d bytes, %s on %s)\n", e.KernelPath, len(e.Kernel), e.FS, where)
	if e.InitrdPath != "" {
		fmt.Fprintf(&b, "initrd:  %s (%d bytes)\n", e.InitrdPath, len(e.Initrd))
	}
	for _, s := range e.Skipped {
		fmt.Fprintf(&b, "skipped: %s\n", s)
	}
	fmt.Fprintf(&b, "cmdline: %s\n", e.Cmdline)
	fmt.Fprintf(&b, "boot:    %s\n", e.AdjustedCmdline)
	return b.String()
}
