// Package pathwalk resolves a path inside a filesystem image the way the
// kernel's path walk does, for the filesystem readers (ext4, XFS, btrfs):
// components one at a time from the root, "." and "..", symlinks followed
// (absolute targets from the filesystem's root, relative ones from their
// directory). The image is untrusted, so every walk is bounded: at most
// MaxSymlinks symlinks, MaxSteps components, and a directory met again
// below itself is reported as the corruption it is.
package pathwalk

import (
	"fmt"
	"io/fs"
	"slices"
	"strings"
)

const (
	// MaxSymlinks is the kernel's limit of symlinks followed in one lookup.
	MaxSymlinks = 40
	// MaxSteps bounds the components walked in one lookup, symlinks' included.
	MaxSteps = 4096
)

// Node is an inode as the walker needs to see it.
type Node interface {
	IsDir() bool
	IsSymlink() bool
}

// FS is a filesystem as the walker needs to see it.
type FS[N Node] interface {
	// Root is the directory that "/" names.
	Root() (N, error)
	// Child is the entry name of directory dir; found is false when dir
	// has none.
	Child(dir N, name string) (child N, found bool, err error)
	// Readlink is a symlink's target.
	Readlink(link N) (string, error)
	// ID names an inode ("inode 128"), uniquely in the filesystem: equal
	// IDs are one inode.
	ID(n N) string
}

// Resolve returns the inode that name (absolute, or relative to "/") names
// in fsys. With follow, a symlink in the last component is followed too.
// Errors start with prefix (the filesystem's name) and the path; a missing
// entry wraps fs.ErrNotExist.
func Resolve[N Node](fsys FS[N], prefix, name string, follow bool) (N, error) {
	var zero N
	fail := func(format string, args ...any) (N, error) {
		return zero, fmt.Errorf("%s: %s: %s", prefix, name, fmt.Sprintf(format, args...))
	}
	root, err := fsys.Root()
	if err != nil {
		return zero, fmt.Errorf("%s: root directory: %w", prefix, err)
	}
	// The walk's position: the directory or file reached, and its
	// ancestors, for ".." and to catch directory loops.
	type step struct {
		node N
		id   string
	}
	top := step{root, fsys.ID(root)}
	cur := top
	var stack []step
	parts := split(name)
	hops, steps := 0, 0
	for i := 0; i < len(parts); i++ {
		if steps++; steps > MaxSteps {
			return fail("more than %d path components to walk", MaxSteps)
		}
		p := parts[i]
		switch {
		case p == ".":
			continue
		case p == "..":
			if n := len(stack); n > 0 {
				cur, stack = stack[n-1], stack[:n-1]
			}
			continue
		case !cur.node.IsDir():
			return fail("%s is not a directory", strings.Join(parts[:i], "/"))
		}
		next, found, err := fsys.Child(cur.node, p)
		if err != nil {
			return zero, err // the reader's errors name the inode
		}
		if !found {
			return zero, fmt.Errorf("%s: %s: %w", prefix, name, fs.ErrNotExist)
		}
		if next.IsSymlink() && (i < len(parts)-1 || follow) {
			if hops++; hops > MaxSymlinks {
				return fail("more than %d symlinks", MaxSymlinks)
			}
			target, err := fsys.Readlink(next)
			if err != nil {
				return zero, err
			}
			var base []string
			if !strings.HasPrefix(target, "/") {
				base = append(base, parts[:i]...)
			}
			parts = append(append(base, split(target)...), parts[i+1:]...)
			cur, stack, i = top, nil, -1
			continue
		}
		stack = append(stack, cur)
		cur = step{next, fsys.ID(next)}
		if next.IsDir() && slices.ContainsFunc(stack, func(a step) bool { return a.id == cur.id }) {
			// A directory has one parent: meeting it again on the way down is corruption.
			return fail("directory loop: %s is %s, also its own ancestor", strings.Join(parts[:i+1], "/"), cur.id)
		}
	}
	return cur.node, nil
}

func split(p string) []string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
