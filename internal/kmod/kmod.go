// Package kmod orders kernel modules for loading without modprobe: each
// module after everything it depends on, modules built into the kernel left
// out. The KVM lab reads dependencies from each module's .modinfo; the
// fixer reads them from a guest's own modules.dep. Both share the order.
package kmod

import (
	"fmt"
	"path"
	"strings"
)

// Name is a module's canonical name: '-' and '_' are one, and a file path
// ("kernel/drivers/block/virtio_blk.ko.xz") gives its module name, the base
// name up to its first dot, as kmod's modname_normalize takes it. Name of a
// name is the name itself, so a dependency and the entry it names meet.
func Name(s string) string {
	b, _, _ := strings.Cut(path.Base(s), ".")
	return strings.ReplaceAll(b, "-", "_")
}

// DepsFunc returns a module's file and its direct dependencies (names);
// ok is false when the module is not known.
type DepsFunc func(name string) (file string, deps []string, ok bool, err error)

// Order lists the files of want and their dependencies, each after
// everything it depends on. A module deps does not know but builtin names
// is skipped; one neither knows is an error naming who needed it.
func Order(deps DepsFunc, builtin map[string]bool, want []string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name, from string) error
	visit = func(name, from string) error {
		name = Name(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency loop through %s", name)
		case 2:
			return nil
		}
		file, ds, ok, err := deps(name)
		if err != nil {
			return err
		}
		if !ok {
			if builtin[name] {
				state[name] = 2
				return nil
			}
			return fmt.Errorf("module %s (needed by %s) is not installed for this kernel", name, from)
		}
		state[name] = 1
		for _, d := range ds {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, file)
		return nil
	}
	for _, w := range want {
		if err := visit(w, "the request"); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// Dep is a parsed modules.dep: module name to its file (relative to
// /lib/modules/KVER) and the files it needs.
type Dep map[string]depEntry

type depEntry struct {
	file string
	deps []string
}

// ParseDep reads modules.dep ("kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko ...").
func ParseDep(b []byte) Dep {
	d := Dep{}
	for _, l := range strings.Split(string(b), "\n") {
		file, rest, ok := strings.Cut(l, ":")
		file = strings.TrimSpace(file)
		if !ok || file == "" || strings.HasPrefix(file, "#") {
			continue
		}
		d[Name(file)] = depEntry{file: file, deps: strings.Fields(rest)}
	}
	return d
}

// Deps is d as a DepsFunc.
func (d Dep) Deps(name string) (string, []string, bool, error) {
	e, ok := d[Name(name)]
	return e.file, e.deps, ok, nil
}

// ParseBuiltin reads modules.builtin (one module path a line) into a set of names.
func ParseBuiltin(b []byte) map[string]bool {
	m := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); strings.HasSuffix(l, ".ko") {
			m[Name(l)] = true
		}
	}
	return m
}
