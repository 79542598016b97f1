#!/usr/bin/env bash
# Side-by-side benchmark of the qcow2, vpc (VHD) and vhdx writers and readers
# against qemu-img convert, in one run, on a 1 GiB ext4 image holding about
# 0.5 GiB (filled from /usr/share, so it compresses like real system files).
# Prints medians of ROUNDS runs, the speed ratio (>1: vmconv is faster),
# peak RSS, CPU time (user + system: the work done, whatever else the machine
# runs meanwhile) and output sizes. qemu-img compresses qcow2 clusters on one
# thread; vmconv compresses on the copy engine's workers, one per core.
# Usage: bench/diskformats.sh [WORKDIR]   (env: ROUNDS=3, VMCONV=bin/vmconv)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
vmconv=$(realpath "${VMCONV:-bin/vmconv}")
[ -x "$vmconv" ] || go build -o "$vmconv" ./cmd/vmconv
work=${1:-${TMPDIR:-/tmp}/vmconv-bench-formats}
mkdir -p "$work"
img=$work/ext4-1g.raw

if [ ! -s "$img" ]; then
	echo "== building $img (ext4 from /usr/share, about 0.5 GiB of files)"
	stage=$work/stage
	rm -rf "$stage"; mkdir -p "$stage"
	# Take directories until about 500 MiB are staged.
	total=0
	for d in /usr/share/*; do
		[ "$total" -gt 500000 ] && break
		s=$(du -sk "$d" 2>/dev/null | cut -f1)
		[ "$((total + s))" -gt 560000 ] && continue
		cp -a "$d" "$stage"/ 2>/dev/null || true
		total=$((total + s))
	done
	mkfs.ext4 -q -F -d "$stage" "$img" 1G
	rm -rf "$stage"
fi
echo "== image: $(du -h --apparent-size "$img" | cut -f1) virtual, $(du -h "$img" | cut -f1) allocated"

measure() {
	/usr/bin/time -f '%e %M %U %S' -o "$work/time.out" "$@" >/dev/null 2>"$work/err.out" || { cat "$work/err.out" >&2; return 1; }
	cat "$work/time.out"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# row NAME 'vmconv cmd' 'qemu-img cmd' [output file for size]
row() {
	local name=$1 ours=$2 theirs=$3 outfile=${4:-}
	local t_ours=() t_theirs=() c_ours=() c_theirs=() rss_ours=0 rss_theirs=0 size_ours="" size_theirs=""
	for _ in $(seq "$rounds"); do
		rm -f "$work"/out.*
		read -r s m u k < <(measure bash -c "$ours")
		t_ours+=("$s"); c_ours+=("$(awk -v u="$u" -v k="$k" 'BEGIN{print u+k}')"); rss_ours=$(( m > rss_ours ? m : rss_ours ))
		[ -n "$outfile" ] && size_ours=$(du -k "$work/$outfile" | cut -f1)
		rm -f "$work"/out.*
		read -r s m u k < <(measure bash -c "$theirs")
		t_theirs+=("$s"); c_theirs+=("$(awk -v u="$u" -v k="$k" 'BEGIN{print u+k}')"); rss_theirs=$(( m > rss_theirs ? m : rss_theirs ))
		[ -n "$outfile" ] && size_theirs=$(du -k "$work/$outfile" | cut -f1)
	done
	local mo mt co ct extra=""
	mo=$(printf '%s\n' "${t_ours[@]}" | median)
	mt=$(printf '%s\n' "${t_theirs[@]}" | median)
	co=$(printf '%s\n' "${c_ours[@]}" | median)
	ct=$(printf '%s\n' "${c_theirs[@]}" | median)
	if [ -n "$size_ours" ] && [ -n "$size_theirs" ]; then
		extra=$(awk -v a="$size_ours" -v b="$size_theirs" 'BEGIN{printf "  on disk %.1f MiB vs %.1f MiB (%+.1f%%)", a/1024, b/1024, (a-b)*100/b}')
	fi
	printf '%-30s vmconv %6.2fs %5d MiB cpu %6.2fs | qemu-img %6.2fs %5d MiB cpu %6.2fs | speed ratio %5.2fx%s\n' \
		"$name" "$mo" $((rss_ours / 1024)) "$co" "$mt" $((rss_theirs / 1024)) "$ct" "$(awk -v a="$mo" -v b="$mt" 'BEGIN{print (a>0)? b/a : 0}')" "$extra"
}

# Inputs both tools read, written by qemu-img.
[ -s "$work/in.qcow2" ] || qemu-img convert -O qcow2 "$img" "$work/in.qcow2"
[ -s "$work/in-z.qcow2" ] || qemu-img convert -c -O qcow2 "$img" "$work/in-z.qcow2"
[ -s "$work/in.vhd" ] || qemu-img convert -O vpc -o force_size=on "$img" "$work/in.vhd"
[ -s "$work/in.vhdx" ] || qemu-img convert -O vhdx "$img" "$work/in.vhdx"

Q="qemu-img convert -t unsafe -T none"
cd "$work"
echo "rounds: $rounds, $(nproc) cores"
row "raw -> qcow2"             "$vmconv convert -O qcow2 $img out.qcow2" "$Q -O qcow2 $img out.qcow2" out.qcow2
row "raw -> qcow2 zlib (-c)"   "$vmconv convert -O qcow2 -o compress=on $img out.qcow2" "$Q -c -O qcow2 $img out.qcow2" out.qcow2
row "raw -> qcow2 zstd (-c)"   "$vmconv convert -O qcow2 -o compress=on,compression_type=zstd $img out.qcow2" "$Q -c -O qcow2 -o compression_type=zstd $img out.qcow2" out.qcow2
# qemu-img's zstd level is libzstd's default, 3; vmconv's default is 1.
row "raw -> qcow2 zstd level 3"   "$vmconv convert -O qcow2 -o compress=on,compression_type=zstd,compression_level=3 $img out.qcow2" "$Q -c -O qcow2 -o compression_type=zstd $img out.qcow2" out.qcow2
row "raw -> vpc dynamic"       "$vmconv convert -O vpc -o force_size=on $img out.vhd" "$Q -O vpc -o force_size=on $img out.vhd" out.vhd
row "raw -> vpc fixed"         "$vmconv convert -O vpc -o subformat=fixed,force_size=on $img out.vhd" "$Q -O vpc -o subformat=fixed,force_size=on $img out.vhd" out.vhd
row "raw -> vhdx"              "$vmconv convert -O vhdx $img out.vhdx" "$Q -O vhdx $img out.vhdx" out.vhdx
row "qcow2 -> raw"             "$vmconv convert in.qcow2 out.raw" "$Q -O raw in.qcow2 out.raw"
row "qcow2 zlib -> raw"        "$vmconv convert in-z.qcow2 out.raw" "$Q -O raw in-z.qcow2 out.raw"
row "vpc -> raw"               "$vmconv convert in.vhd out.raw" "$Q -O raw in.vhd out.raw"
row "vhdx -> raw"              "$vmconv convert in.vhdx out.raw" "$Q -O raw in.vhdx out.raw"
rm -f "$work"/out.*
