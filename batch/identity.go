package batch

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/vmconv/vmconv/formats"
)

// descriptionLimit is the size under which a source file is taken to be a
// VM description (a .vmx, an xl.cfg, an .ovf, a vm.json) rather than a disk.
const descriptionLimit = 1 << 20

// Identity fingerprints a job's source without reading its disks: a rerun
// must decide in milliseconds whether a 500 GB VM changed, and the content
// digest would read all of it again. It covers the source file's size and
// modification time; for a description file, its content's SHA-256 and the
// size and modification time of every file beside it (its disks live
// there: a VMware datastore folder, an OVF package); for a directory (a
// bundle), every file directly in it and in disks/. A description's disks
// are also opened for their sizes (headers only), which covers disks kept in
// another directory as far as their size goes. A change anywhere among them
// (even to a sibling the VM does not use) redoes the VM: safe, and cheap.
func Identity(source string) (string, error) {
	h := sha256.New()
	fi, err := os.Stat(source)
	if err != nil {
		return "", fmt.Errorf("source %s: %w", source, err)
	}
	var dirs []string
	switch {
	case fi.IsDir():
		dirs = []string{source, filepath.Join(source, "disks")}
		if err := hashFile(h, filepath.Join(source, "vm.json")); err != nil && !os.IsNotExist(err) {
			return "", err
		}
	case fi.Size() < descriptionLimit:
		fmt.Fprintf(h, "%d %d\n", fi.Size(), fi.ModTime().UnixNano())
		if err := hashFile(h, source); err != nil {
			return "", err
		}
		dirs = []string{filepath.Dir(source)}
		diskSizes(h, source)
	default:
		fmt.Fprintf(h, "%d %d\n", fi.Size(), fi.ModTime().UnixNano())
	}
	for _, d := range dirs {
		if err := statDir(h, d); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// diskSizes writes the size of each disk of the VM a description names. A
// description that does not open is left to the conversion to report.
func diskSizes(w io.Writer, source string) {
	f, err := formats.Detect(source)
	if err != nil || !f.IsVM() {
		return
	}
	vm, err := formats.OpenVM(source, f)
	if err != nil {
		return
	}
	defer vm.Close()
	for _, d := range vm.Disks {
		size := int64(-1)
		if d.Image != nil {
			size = d.Image.Size()
		}
		fmt.Fprintf(w, "disk %s %d %d\n", d.ID, d.CapacityBytes, size)
	}
}

func hashFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(w, io.LimitReader(f, descriptionLimit)); err != nil {
		return fmt.Errorf("source %s: %w", path, err)
	}
	return nil
}

// statDir writes the name, size and modification time of each regular file
// in dir, in name order; temporary files are left out.
func statDir(w io.Writer, dir string) error {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("source directory %s: %w", dir, err)
	}
	sort.Slice(ents, func(a, b int) bool { return ents[a].Name() < ents[b].Name() })
	for _, e := range ents {
		if !e.Type().IsRegular() || isTemp(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile: not part of the VM
		}
		fmt.Fprintf(w, "%s %d %d\n", e.Name(), fi.Size(), fi.ModTime().UnixNano())
	}
	return nil
}

// OptionsHash fingerprints everything about a job that shapes its output.
func OptionsHash(j *Job) string {
	b, _ := json.Marshal(j) // map keys are sorted: the same job, the same bytes
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
