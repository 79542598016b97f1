#!/usr/bin/env bash
# Side-by-side conversion benchmark: vmconv against qemu-img convert, in one
# run, on a realistic 2 GiB image (ext4 filled from /usr, ~40 % free, holes).
# Prints medians of ROUNDS runs, ratios (>1 means vmconv is faster) and peak
# RSS. Usage: bench/convert.sh [WORKDIR]   (env: ROUNDS=3, VMCONV=bin/vmconv)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
vmconv=$(realpath "${VMCONV:-bin/vmconv}")
[ -x "$vmconv" ] || go build -o "$vmconv" ./cmd/vmconv
work=${1:-${TMPDIR:-/tmp}/vmconv-bench}
mkdir -p "$work"
img=$work/realistic.raw

if [ ! -s "$img" ]; then
	echo "== building $img (ext4 from /usr/share, /usr/bin, /usr/libexec)"
	stage=$work/stage
	rm -rf "$stage"; mkdir -p "$stage"
	cp -a /usr/share /usr/bin /usr/libexec "$stage"/ 2>/dev/null || true
	mkfs.ext4 -q -F -d "$stage" "$img" 2G
	rm -rf "$stage"
fi
echo "== image: $(du -h --apparent-size "$img" | cut -f1) virtual, $(du -h "$img" | cut -f1) allocated"

# measure CMD...: prints "seconds maxrss_kib" of one run.
measure() {
	/usr/bin/time -f '%e %M' -o "$work/time.out" "$@" >/dev/null 2>"$work/err.out" || { cat "$work/err.out" >&2; return 1; }
	cat "$work/time.out"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# row NAME 'vmconv cmd' 'qemu-img cmd' [output file for size]
row() {
	local name=$1 ours=$2 theirs=$3 outfile=${4:-}
	local t_ours=() t_theirs=() rss_ours=0 rss_theirs=0 size_ours="" size_theirs=""
	for _ in $(seq "$rounds"); do
		rm -f "$work"/out.*
		read -r s m < <(measure bash -c "$ours")
		t_ours+=("$s"); rss_ours=$(( m > rss_ours ? m : rss_ours ))
		[ -n "$outfile" ] && size_ours=$(stat -c %s "$work/$outfile" 2>/dev/null || echo "")
		rm -f "$work"/out.*
		read -r s m < <(measure bash -c "$theirs")
		t_theirs+=("$s"); rss_theirs=$(( m > rss_theirs ? m : rss_theirs ))
		[ -n "$outfile" ] && size_theirs=$(stat -c %s "$work/$outfile" 2>/dev/null || echo "")
	done
	local mo mt
	mo=$(printf '%s\n' "${t_ours[@]}" | median)
	mt=$(printf '%s\n' "${t_theirs[@]}" | median)
	local extra=""
	if [ -n "$size_ours" ] && [ -n "$size_theirs" ]; then
		extra=$(awk -v a="$size_ours" -v b="$size_theirs" 'BEGIN{printf "  size %.1f MiB vs %.1f MiB (%+.1f%%)", a/1048576, b/1048576, (a-b)*100/b}')
	fi
	printf '%-28s vmconv %6.2fs %5d MiB | %-10s %6.2fs %5d MiB | speed ratio %5.2fx%s\n' \
		"$name" "$mo" $((rss_ours / 1024)) "$5" "$mt" $((rss_theirs / 1024)) "$(awk -v a="$mo" -v b="$mt" 'BEGIN{print (a>0)? b/a : 0}')" "$extra"
}

# Inputs both tools read: made by qemu-img, so neither reads its own output.
[ -s "$work/in-stream.vmdk" ] || qemu-img convert -O vmdk -o subformat=streamOptimized "$img" "$work/in-stream.vmdk"
[ -s "$work/in-sparse.vmdk" ] || qemu-img convert -O vmdk -o subformat=monolithicSparse "$img" "$work/in-sparse.vmdk"

# qemu-img in its faster cache mode for writes (-t unsafe: no flushes).
Q="qemu-img convert -t unsafe -T none"
cd "$work"
echo "rounds: $rounds, $(nproc) cores"
row "raw -> monolithicSparse" "$vmconv convert -O vmdk -o subformat=monolithicSparse $img out.vmdk" "$Q -O vmdk -o subformat=monolithicSparse $img out.vmdk" out.vmdk qemu-img
row "raw -> streamOptimized"  "$vmconv convert -O vmdk -o subformat=streamOptimized $img out.vmdk"  "$Q -O vmdk -o subformat=streamOptimized $img out.vmdk" out.vmdk qemu-img
row "streamOptimized -> raw"  "$vmconv convert in-stream.vmdk out.raw" "$Q -O raw in-stream.vmdk out.raw" "" qemu-img
row "monolithicSparse -> raw" "$vmconv convert in-sparse.vmdk out.raw" "$Q -O raw in-sparse.vmdk out.raw" "" qemu-img
row "digest (vs sha256sum)"    "$vmconv digest $img" "sha256sum $img" "" sha256sum
rm -f "$work"/out.*
