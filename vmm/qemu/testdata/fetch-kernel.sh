#!/bin/sh
# fetch-kernel.sh — download Debian's stock amd64 kernel (the package that
# linux-image-amd64 depends on) and unpack it under the shared cache:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/vmconv/kernel/<package>/  (the unpacked .deb)
#   ${XDG_CACHE_HOME:-$HOME/.cache}/vmconv/kernel/current     -> <package>
#
# Idempotent: a package already unpacked is not fetched again, and once one is
# cached apt is not even asked (set VMCONV_KERNEL_REFRESH=1 to follow a newer
# linux-image-amd64). Prints the directory of the unpacked package (vmlinuz in
# boot/, modules in lib/modules/). VMCONV_KERNEL_PACKAGE names another package.
set -eu

cache="${XDG_CACHE_HOME:-$HOME/.cache}/vmconv/kernel"
mkdir -p "$cache"

if [ -z "${VMCONV_KERNEL_PACKAGE:-}" ] && [ -z "${VMCONV_KERNEL_REFRESH:-}" ] &&
	[ -f "$cache/current/.complete" ]; then
	echo "$cache/$(readlink "$cache/current")"
	exit 0
fi

# Which versioned package does the meta package point at?
pkg="${VMCONV_KERNEL_PACKAGE:-}"
if [ -z "$pkg" ]; then
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1)
fi
if [ -z "$pkg" ] && [ -L "$cache/current" ]; then
	# No apt metadata (offline): keep using what is cached.
	pkg=$(basename "$(readlink "$cache/current")")
fi
if [ -z "$pkg" ]; then
	echo "fetch-kernel: cannot tell which linux-image package linux-image-amd64 depends on (run apt-get update?)" >&2
	exit 1
fi

dir="$cache/$pkg"
if [ ! -f "$dir/.complete" ]; then
	tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT INT TERM
	chmod 755 "$tmp" # apt's download user must be able to write here
	sandbox=""
	[ "$(id -u)" = 0 ] && sandbox="-o APT::Sandbox::User=root"
	# shellcheck disable=SC2086
	(cd "$tmp" && apt-get download $sandbox "$pkg" >/dev/null)
	deb=$(ls "$tmp"/*.deb)
	mkdir "$tmp/root"
	dpkg-deb -x "$deb" "$tmp/root"
	ls "$tmp"/root/boot/vmlinuz-* >/dev/null
	touch "$tmp/root/.complete"
	rm -rf "$dir"
	# Another run may have finished first; its copy is as good as ours.
	mv -T "$tmp/root" "$dir" 2>/dev/null || [ -f "$dir/.complete" ]
fi
ln -sfn "$pkg" "$cache/current.tmp"
mv -T "$cache/current.tmp" "$cache/current"
echo "$dir"
