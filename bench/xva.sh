#!/usr/bin/env bash
# XVA benchmark: vmconv against Xen Orchestra's own XVA writer
# (@xen-orchestra/xva, run by node through formats/xva/testdata/xo/write-xva.mjs)
# on a realistic image (ext4 filled from /usr, ~40 % free, holes), in one run.
#   raw -> XVA   vmconv (SHA-1 .checksum, the default; and -o checksum=xxhash,
#                the same work as XO) vs XO's writer (.xxhash)
#   XVA -> raw   vmconv reading XO's XVA (checksums verified) vs GNU tar
#                extracting the same archive (same bytes written, no checks,
#                no fsync: a floor)
#   empty disk   raw -> XVA of a 2 GiB hole: XO reads every zero byte, vmconv
#                reads the allocation map
# Prints medians of ROUNDS runs, MB/s of virtual size, speed ratios (>1 means
# vmconv is faster; target >= 3x XO and >= 1 GB/s) and peak RSS. vmconv
# writing a file fsyncs it before renaming it into place (XO does not): the
# "to stdout" row shows the cost without that.
# Usage: bench/xva.sh [WORKDIR]   (env: ROUNDS=3 SIZE=2G VMCONV=/tmp/vmconv)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
rounds=${ROUNDS:-3}
size=${SIZE:-2G}
vmconv=${VMCONV:-/tmp/vmconv}
[ -x "$vmconv" ] || go build -o "$vmconv" ./cmd/vmconv
xo=$repo/formats/xva/testdata/xo
if [ ! -d "$xo/node_modules/@xen-orchestra/xva" ]; then
	echo "== installing Xen Orchestra's writer (npm ci in $xo)"
	npm ci --prefix "$xo" --no-audit --no-fund >/dev/null
fi
work=${1:-${TMPDIR:-/tmp}/vmconv-bench}
mkdir -p "$work"
# A private copy: a shared /tmp/vmconv may be rebuilt while we run.
cp "$vmconv" "$work/vmconv-xva" && vmconv=$work/vmconv-xva
img=$work/realistic-$size.raw
[ "$size" = 2G ] && img=$work/realistic.raw # the image bench/convert.sh builds

if [ ! -s "$img" ]; then
	echo "== building $img (ext4 from /usr/share, /usr/bin, /usr/libexec)"
	stage=$work/stage
	rm -rf "$stage"; mkdir -p "$stage"
	cp -a /usr/share /usr/bin /usr/libexec "$stage"/ 2>/dev/null || true
	mkfs.ext4 -q -F -d "$stage" "$img" "$size" || { echo "mkfs.ext4 -d failed (is $size too small for /usr?)" >&2; exit 1; }
	rm -rf "$stage"
fi
hole=$work/hole-$size.raw
[ -e "$hole" ] || truncate -s "$size" "$hole"
vsize=$(stat -c %s "$img")
echo "== image: $(du -h --apparent-size "$img" | cut -f1) virtual, $(du -h "$img" | cut -f1) allocated; $(nproc) cores; rounds: $rounds"

desc() { # desc RAW: XO writer input for one disk
	printf '{"vm": {"name_label": "bench", "memory": 1073741824, "nCpus": 1, "firmware": "bios"}, "disks": [{"path": "%s", "name_label": "disk"}]}\n' "$1"
}
desc "$img" >"$work/xo-img.json"
desc "$hole" >"$work/xo-hole.json"

# measure CMD...: prints "seconds maxrss_kib" of one run.
measure() {
	/usr/bin/time -v -o "$work/time.out" "$@" >/dev/null 2>"$work/err.out" || { cat "$work/err.out" >&2; return 1; }
	local s m
	s=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); t=0; for(i=1;i<=n;i++) t=t*60+a[i]; print t}' "$work/time.out")
	m=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.out")
	echo "$s $m"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# row NAME 'vmconv cmd' 'peer cmd' PEER
row() {
	local name=$1 ours=$2 theirs=$3 peer=$4
	local t_ours=() t_theirs=() rss_ours=0 rss_theirs=0 s m
	for _ in $(seq "$rounds"); do
		rm -rf "$work"/out.*
		read -r s m < <(measure bash -c "$ours")
		t_ours+=("$s"); rss_ours=$(( m > rss_ours ? m : rss_ours ))
		rm -rf "$work"/out.*
		read -r s m < <(measure bash -c "$theirs")
		t_theirs+=("$s"); rss_theirs=$(( m > rss_theirs ? m : rss_theirs ))
	done
	local mo mt
	mo=$(printf '%s\n' "${t_ours[@]}" | median)
	mt=$(printf '%s\n' "${t_theirs[@]}" | median)
	printf '%-26s vmconv %6.2fs %6.0f MB/s %5d MiB | %-8s %6.2fs %6.0f MB/s %5d MiB | speed ratio %5.2fx\n' \
		"$name" "$mo" "$(awk -v s="$vsize" -v t="$mo" 'BEGIN{print (t>0)? s/t/1e6 : 0}')" $((rss_ours / 1024)) \
		"$peer" "$mt" "$(awk -v s="$vsize" -v t="$mt" 'BEGIN{print (t>0)? s/t/1e6 : 0}')" $((rss_theirs / 1024)) \
		"$(awk -v a="$mo" -v b="$mt" 'BEGIN{print (a>0)? b/a : 0}')"
}

XO="node $xo/write-xva.mjs"
# An input both read: XO's own XVA of the image.
[ -s "$work/in-xo.xva" ] || $XO "$work/xo-img.json" "$work/in-xo.xva"

cd "$work"
row "raw -> xva (sha1)"   "$vmconv convert --force -O xva $img out.xva" "$XO xo-img.json out.xva" xo
row "raw -> xva (xxhash)" "$vmconv convert --force -O xva -o checksum=xxhash $img out.xva" "$XO xo-img.json out.xva" xo
row "raw -> xva to stdout" "$vmconv convert -O xva $img - > out.xva" "$XO xo-img.json out.xva" xo
untar="mkdir out.x && tar -xf in-xo.xva -C out.x"
row "xva -> raw"          "$vmconv convert --force in-xo.xva out.raw" "$untar" "tar -x"
row "xva (stdin) -> raw"  "$vmconv convert --force -f xva - out.raw < in-xo.xva" "$untar" "tar -x"
vsize=$(stat -c %s "$hole")
row "empty disk raw -> xva" "$vmconv convert --force -O xva $hole out.xva" "$XO xo-hole.json out.xva" xo
rm -rf "$work"/out.*
