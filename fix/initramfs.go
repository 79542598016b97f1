package fix

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/vmconv/vmconv/boot"
	"github.com/vmconv/vmconv/internal/cpio"
	"github.com/vmconv/vmconv/internal/kmod"
)

// Bounds on what is read from the guest's module tree.
const (
	maxModulesDep  = 16 << 20
	maxModule      = 64 << 20 // one module, compressed or not
	maxModuleTotal = 256 << 20
)

// Module is a kernel module file for the initramfs, decompressed.
type Module struct {
	Name string // "virtio_blk"
	Data []byte
}

// GuestModules reads from the guest's root filesystem the modules of
// kernel kver that want names and everything they depend on, in load
// order per the guest's own modules.dep; modules built in (modules.builtin)
// are left out. optional names are skipped when the kernel has no such
// module. Compressed modules (.ko.xz, .ko.zst, .ko.gz) are decompressed
// here, so that /init only calls init_module.
func GuestModules(root boot.FS, kver string, want, optional []string) ([]Module, error) {
	dir := "/lib/modules/" + kver
	depB, err := root.ReadFile(dir+"/modules.dep", maxModulesDep)
	if err != nil {
		return nil, fmt.Errorf("fix: %s/modules.dep: %w", dir, err)
	}
	dep := kmod.ParseDep(depB)
	bi, _ := root.ReadFile(dir+"/modules.builtin", maxModulesDep) // absent: nothing built in
	builtin := kmod.ParseBuiltin(bi)
	var files []string
	seen := map[string]bool{}
	for i, w := range append(append([]string(nil), want...), optional...) {
		order, err := kmod.Order(dep.Deps, builtin, []string{w})
		if err != nil {
			if i >= len(want) {
				continue
			}
			return nil, fmt.Errorf("fix: kernel %s: %w", kver, err)
		}
		for _, f := range order {
			if !seen[f] {
				seen[f] = true
				files = append(files, f)
			}
		}
	}
	var mods []Module
	total := 0
	for _, f := range files {
		if strings.Contains(f, "..") {
			return nil, fmt.Errorf("fix: %s/modules.dep names %q", dir, f)
		}
		b, err := root.ReadFile(path.Join(dir, f), maxModule)
		if err != nil {
			return nil, fmt.Errorf("fix: module %s: %w", f, err)
		}
		if b, err = decompress(f, b); err != nil {
			return nil, fmt.Errorf("fix: module %s: %w", f, err)
		}
		if total += len(b); total > maxModuleTotal {
			return nil, fmt.Errorf("fix: the modules to load exceed %d MiB", maxModuleTotal>>20)
		}
		mods = append(mods, Module{Name: kmod.Name(f), Data: b})
	}
	return mods, nil
}

// decompress unpacks a module by its file name's suffix, bounded.
func decompress(name string, b []byte) ([]byte, error) {
	var r io.Reader
	switch {
	case strings.HasSuffix(name, ".xz"):
		xr, err := xz.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		r = xr
	case strings.HasSuffix(name, ".zst"):
		zr, err := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderMaxMemory(maxModule))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(name, ".gz"):
		gr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		r = gr
	default:
		return b, nil
	}
	out, err := io.ReadAll(io.LimitReader(r, maxModule+1))
	if err != nil {
		return nil, err
	}
	if len(out) > maxModule {
		return nil, fmt.Errorf("larger than %d MiB decompressed", maxModule>>20)
	}
	return out, nil
}

// libDirs are where the host's dynamic loader finds libraries.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// RuntimeFiles returns the host files a program needs to run in the
// initramfs: itself, and when it is dynamically linked (a cgo build), its
// ELF interpreter and the DT_NEEDED libraries, transitively, found where
// the host's loader finds them and kept at the same paths.
func RuntimeFiles(prog string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	var visit func(p string) error
	visit = func(p string) error {
		if seen[p] {
			return nil
		}
		seen[p] = true
		f, err := elf.Open(p)
		if err != nil {
			return fmt.Errorf("fix: %s: %w", p, err)
		}
		defer f.Close()
		for _, ph := range f.Progs {
			if ph.Type == elf.PT_INTERP {
				b := make([]byte, min(ph.Filesz, 4096))
				if _, err := ph.ReadAt(b, 0); err != nil {
					return fmt.Errorf("fix: %s: PT_INTERP: %w", p, err)
				}
				interp := string(bytes.TrimRight(b, "\x00"))
				if !seen[interp] {
					seen[interp] = true
					out = append(out, interp)
				}
			}
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("fix: %s: DT_NEEDED: %w", p, err)
		}
		for _, l := range libs {
			found := ""
			for _, d := range libDirs {
				if _, err := os.Stat(path.Join(d, l)); err == nil {
					found = path.Join(d, l)
					break
				}
			}
			if found == "" {
				return fmt.Errorf("fix: %s needs %s, not found in %s", p, l, strings.Join(libDirs, " "))
			}
			if err := visit(found); err != nil {
				return err
			}
		}
		if p != prog {
			out = append(out, p)
		}
		return nil
	}
	if err := visit(prog); err != nil {
		return nil, err
	}
	return append([]string{prog}, out...), nil
}

// BuildInitramfs writes the fixer's initramfs: the program at initPath as
// /init with the files it needs to run (RuntimeFiles), the modules in
// ModuleDir in load order (named in the plan), and the plan as PlanFile.
func BuildInitramfs(w io.Writer, initPath string, plan *Plan, mods []Module) error {
	files, err := RuntimeFiles(initPath)
	if err != nil {
		return err
	}
	cw := cpio.NewWriter(w)
	dirs := map[string]bool{}
	mkdirs := func(p string) {
		var parts []string
		for d := path.Dir(p); d != "/" && d != "." && !dirs[d]; d = path.Dir(d) {
			parts = append(parts, d)
			dirs[d] = true
		}
		sort.Strings(parts) // parents first
		for _, d := range parts {
			cw.Dir(strings.TrimPrefix(d, "/"), 0o755)
		}
	}
	for _, d := range []string{"/dev/x", "/proc/x", "/sys/x", "/root/x", "/tmp/x", ModuleDir + "/x"} {
		mkdirs(d)
	}
	cw.CharDevice("dev/console", 0o600, 5, 1)
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("fix: %w", err)
		}
		name := f
		if i == 0 {
			name = "/init"
		}
		mkdirs(name)
		cw.File(strings.TrimPrefix(name, "/"), 0o755, b)
	}
	p := *plan
	p.Modules = nil
	for i, m := range mods {
		name := fmt.Sprintf("%02d-%s.ko", i, m.Name)
		p.Modules = append(p.Modules, name)
		cw.File(strings.TrimPrefix(ModuleDir+"/"+name, "/"), 0o644, m.Data)
	}
	pj, err := json.Marshal(&p)
	if err != nil {
		return fmt.Errorf("fix: plan: %w", err)
	}
	cw.File(strings.TrimPrefix(PlanFile, "/"), 0o644, pj)
	if err := cw.Close(); err != nil {
		return fmt.Errorf("fix: initramfs: %w", err)
	}
	return nil
}
