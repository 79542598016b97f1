package ovf

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/neutral"
)

// WriteOptions tune Write.
type WriteOptions struct {
	// Archive writes one .ova (a tar; "-" is standard output) instead of a
	// directory with NAME.ovf, NAME.mf and the disks.
	Archive bool
	// HWVersion is the vmx-NN VirtualSystemType; 0 means 14.
	HWVersion int
	// NewDisk creates a streamOptimized VMDK writer at path whose
	// ddb.adapterType is adapter ("ide", "lsilogic", "buslogic").
	NewDisk func(out *disk.Output, path string, size int64, adapter string) (disk.Writer, error)
}

// DefaultHWVersion is the virtual hardware version written: ESXi 6.7,
// Workstation 14 and VirtualBox all import it.
const DefaultHWVersion = 14

// Write writes vm as an OVF package at path: NAME.ovf with NAME.mf and
// NAME-diskN.vmdk (streamOptimized) beside it, or, with opt.Archive, one
// OVA holding them in that order (descriptor first, as OVF requires).
// ISOs of CD-ROM drives with media go in as NAME-fileN.iso. The manifest
// holds SHA256 digests of every file. Disks are written to a staging
// directory first (their sizes and digests go into the descriptor, which
// comes first); every target goes through out, so nothing appears unless
// out is committed.
func Write(ctx context.Context, out *disk.Output, path string, vm *neutral.VM, opt WriteOptions, copyOpt disk.CopyOptions) error {
	if !opt.Archive && path == disk.Stdout {
		return errors.New("ovf: an OVF package is a directory of files; write an .ova to standard output")
	}
	if err := checkWritable(vm); err != nil {
		return err
	}
	if opt.HWVersion == 0 {
		opt.HWVersion = DefaultHWVersion
	}
	name := packageName(path, vm)
	files := plannedFiles(vm, name)
	dir := filepath.Dir(path)
	if !opt.Archive && !out.Force {
		targets := []string{path, strings.TrimSuffix(path, filepath.Ext(path)) + ".mf"}
		for _, f := range files {
			if f.Name != "" {
				targets = append(targets, filepath.Join(dir, f.Name))
			}
		}
		for _, t := range targets {
			if _, err := os.Lstat(t); err == nil {
				return fmt.Errorf("%s: already exists (use --force to replace it)", t)
			}
		}
	}
	stageParent := existingAncestor(dir)
	if path == disk.Stdout {
		stageParent = os.TempDir()
	} else if err := out.MkdirAll(dir); err != nil {
		return fmt.Errorf("ovf %s: %w", path, err)
	}
	st, err := newStage(stageParent)
	if err != nil {
		return fmt.Errorf("ovf %s: %w", path, err)
	}
	defer st.out.Abort()
	sums := map[string][]byte{}
	for i := range vm.Disks {
		if files[i].Name == "" {
			continue
		}
		if err := st.writeDrive(ctx, vm, i, &files[i], opt, copyOpt); err != nil {
			return fmt.Errorf("ovf %s: %w", path, err)
		}
		if sums[files[i].Name], err = fileSHA256(st.path(files[i].Name)); err != nil {
			return fmt.Errorf("ovf %s: %w", path, err)
		}
	}
	desc, err := descriptor(vm, files, opt.HWVersion)
	if err != nil {
		return err
	}
	ovfName := name + ".ovf"
	sum := sha256.Sum256(desc)
	sums[ovfName] = sum[:]
	order := []string{ovfName}
	for _, f := range files {
		if f.Name != "" {
			order = append(order, f.Name)
		}
	}
	mf := FormatManifest(order, sums)
	if opt.Archive {
		return writeArchive(out, path, ovfName, desc, name+".mf", mf, order[1:], st)
	}
	return writeDirectory(out, path, desc, mf, order[1:], st)
}

// existingAncestor is dir or its nearest ancestor that exists (the stage
// must be on the target's file system, so staged files are renamed, not
// copied).
func existingAncestor(dir string) string {
	for {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}

// checkWritable refuses a VM whose drives cannot be written.
func checkWritable(vm *neutral.VM) error {
	switch {
	case vm.CPUs < 1 || vm.CPUs > maxCPUs:
		return fmt.Errorf("ovf: vm %q: %d vCPUs: want 1–%d", vm.Name, vm.CPUs, maxCPUs)
	case vm.MemoryMiB < 1 || vm.MemoryMiB > maxMemoryMiB:
		return fmt.Errorf("ovf: vm %q: memory %d MiB out of range", vm.Name, vm.MemoryMiB)
	}
	for _, d := range vm.Disks {
		if d.Device != "cdrom" && d.Image == nil {
			return fmt.Errorf("ovf: vm %q: disk %s has no content to write", vm.Name, d.ID)
		}
	}
	for i, n := range vm.NICs {
		if n.MAC != "" {
			if _, err := parseMAC(n.MAC); err != nil {
				return fmt.Errorf("ovf: vm %q: nic %d: MAC %q: %w", vm.Name, i, n.MAC, err)
			}
		}
	}
	return nil
}

// packageName is the base name of the package's files: the target's name
// without extension, or the VM's name for standard output, reduced to
// characters every tar and every importer take.
func packageName(path string, vm *neutral.VM) string {
	n := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if path == disk.Stdout {
		n = vm.Name
	}
	var b strings.Builder
	for _, r := range n {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 64 {
			break
		}
	}
	s := strings.TrimLeft(b.String(), ".")
	if s == "" {
		s = "vm"
	}
	return s
}

// plannedFiles names each drive's file: NAME-diskN.vmdk, NAME-fileN.iso.
func plannedFiles(vm *neutral.VM, name string) []PackageFile {
	files := make([]PackageFile, len(vm.Disks))
	nd, nf := 0, 0
	for i, d := range vm.Disks {
		switch {
		case d.Device == "cdrom" && d.Image != nil:
			nf++
			files[i].Name = fmt.Sprintf("%s-file%d.iso", name, nf)
		case d.Device != "cdrom":
			nd++
			files[i].Name = fmt.Sprintf("%s-disk%d.vmdk", name, nd)
		}
	}
	return files
}

// stage is a hidden directory beside the target holding the package's
// files until the descriptor is written; an interrupt removes it.
type stage struct {
	out    *disk.Output
	target string // the staging directory's name for out
	dir    string // where its files really are until committed
}

func newStage(parent string) (*stage, error) {
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	o := disk.NewOutput(false)
	target := filepath.Join(parent, ".vmconv-ovf-"+hex.EncodeToString(rnd[:]))
	dir, err := o.Mkdir(target)
	if err != nil {
		o.Abort()
		return nil, err
	}
	return &stage{out: o, target: target, dir: dir}, nil
}

func (s *stage) path(name string) string { return filepath.Join(s.dir, name) }

// writeDrive writes drive i's content to the stage: a streamOptimized VMDK
// for a disk, a raw ISO for a CD-ROM.
func (s *stage) writeDrive(ctx context.Context, vm *neutral.VM, i int, f *PackageFile, opt WriteOptions, copyOpt disk.CopyOptions) error {
	d := vm.Disks[i]
	img := d.Image
	var w disk.Writer
	if d.Device == "cdrom" {
		fh, err := s.out.Create(filepath.Join(s.target, f.Name))
		if err != nil {
			return err
		}
		w = disk.NewRawWriter(fh, img.Size())
	} else {
		if opt.NewDisk == nil {
			return errors.New("no disk writer")
		}
		adapter := "lsilogic"
		if d.Bus == "ide" {
			adapter = "ide"
		}
		var err error
		if w, err = opt.NewDisk(s.out, filepath.Join(s.target, f.Name), img.Size(), adapter); err != nil {
			return fmt.Errorf("disk %s: %w", d.ID, err)
		}
	}
	if err := disk.Copy(ctx, img, w, copyOpt); err != nil {
		return fmt.Errorf("disk %s → %s: %w", d.ID, f.Name, err)
	}
	fi, err := os.Stat(s.path(f.Name))
	if err != nil {
		return err
	}
	f.Size = fi.Size()
	f.Populated, err = allocated(img)
	return err
}

// allocated is the bytes of an image's Data extents.
func allocated(img disk.Image) (int64, error) {
	exts, err := img.Extents(0, img.Size())
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range exts {
		if e.Kind == disk.Data {
			n += e.Length
		}
	}
	return n, nil
}

func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// writeDirectory places the descriptor, the manifest and the staged files
// beside each other through out. A staged file is synced and renamed onto
// the temporary file out made for it, so it is never copied.
func writeDirectory(out *disk.Output, path string, desc, mf []byte, names []string, st *stage) error {
	for _, x := range []struct {
		target string
		data   []byte
	}{{path, desc}, {strings.TrimSuffix(path, filepath.Ext(path)) + ".mf", mf}} {
		fh, err := out.Create(x.target)
		if err != nil {
			return err
		}
		if _, err := fh.Write(x.data); err != nil {
			return fmt.Errorf("ovf %s: %w", x.target, err)
		}
	}
	dir := filepath.Dir(path)
	for _, n := range names {
		fh, err := out.Create(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		if err := syncFile(st.path(n)); err != nil {
			return fmt.Errorf("ovf %s: %w", n, err)
		}
		if err := os.Rename(st.path(n), fh.Name()); err != nil {
			return fmt.Errorf("ovf %s: %w", n, err)
		}
	}
	return nil
}

func syncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// writeArchive writes the OVA: descriptor, manifest, then the files, as
// ovftool orders them. It streams: "-" is standard output.
func writeArchive(out *disk.Output, path, ovfName string, desc []byte, mfName string, mf []byte, names []string, st *stage) error {
	fh, err := out.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(fh)
	now := time.Now().Truncate(time.Second)
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{Name: name, Size: size, Mode: 0o644, ModTime: now, Typeflag: tar.TypeReg,
			Uname: "someone", Gname: "someone", Format: tar.FormatUSTAR}
	}
	for _, x := range []struct {
		name string
		data []byte
	}{{ovfName, desc}, {mfName, mf}} {
		if err := tw.WriteHeader(hdr(x.name, int64(len(x.data)))); err != nil {
			return fmt.Errorf("ova %s: %s: %w", path, x.name, err)
		}
		if _, err := tw.Write(x.data); err != nil {
			return fmt.Errorf("ova %s: %s: %w", path, x.name, err)
		}
	}
	for _, n := range names {
		if err := copyMember(tw, hdr, st.path(n), n); err != nil {
			return fmt.Errorf("ova %s: %s: %w", path, n, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("ova %s: %w", path, err)
	}
	return nil
}

func copyMember(tw *tar.Writer, hdr func(string, int64) *tar.Header, src, name string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(hdr(name, fi.Size())); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}
