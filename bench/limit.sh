#!/usr/bin/env bash
# vmconv against its peers and against the physical limit, durable on both
# sides, in one run. For each case:
#   peer     qemu-img convert (or Xen Orchestra's XVA writer, as bench/xva.sh
#            drives it) followed by `sync -d OUT`, so its data is on disk too
#   vmconv   vmconv convert (fsyncs its output before renaming it into place)
#   floors   write: dd if=/dev/zero of=F bs=1M count=<vmconv output's
#            allocated MiB> conv=fdatasync, timed in the same round;
#            CPU: one core's deflate/inflate throughput on the same grains
#            (go test -bench in formats/vmdk, -cpu 1) divided by the cores,
#            with the inflater the vmconv binary was built with (libdeflate
#            when built with -tags libdeflate, else klauspost); and beside it
#            the same codec measured running on every core at once
#            (*AllCores benchmarks, -cpu <cores>), which is what the cores
#            really give when they share caches or are SMT siblings
#   floor    the larger of write and CPU floor; vmconv/floor is how far from
#            the limit, against the one-core÷cores floor and the all-cores one
#   CPU      vmconv's user + system seconds, and how busy that kept the cores
#            (CPU ÷ (wall × cores)): near 100 % the run is CPU-bound
#   shared   for the codec cases, the floor when the codec and the write path
#            share the cores: the codec's one-core seconds plus dd's own CPU
#            seconds (its copy into the page cache), over the cores, with the
#            codec's one-core÷cores and its all-cores seconds as above. It is
#            still low: the kernel's writeback threads are not counted
# `sync` runs before every timed command. Medians of ROUNDS runs with the
# spread (min–max); peak RSS from /usr/bin/time -v. Prints a markdown table.
# With BASE=/path/to/older/vmconv the older build is timed in the same rounds
# and every output's content digest (vmconv digest) is compared with its
# output's (VMDK CIDs and XVA UUIDs are random per run, so bytes differ).
# A missing VMCONV is built, with -tags libdeflate where libdeflate's header
# is installed (Debian: libdeflate-dev).
# CASES, an extended regular expression, runs only the cases whose names
# match (e.g. CASES='streamOptimized → raw').
# Usage: bench/limit.sh [WORKDIR]   (env: ROUNDS=5 VMCONV=bin/vmconv BASE= CASES=)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
rounds=${ROUNDS:-5}
vmconv=$(realpath "${VMCONV:-bin/vmconv}")
if [ ! -x "$vmconv" ]; then
	tags=$(echo '#include <libdeflate.h>' | gcc -E -x c - >/dev/null 2>&1 && echo libdeflate || true)
	go build -tags "$tags" -o "$vmconv" ./cmd/vmconv
fi
# The inflater the binary uses, for the CPU floor.
inflater=klauspost
go version -m "$vmconv" | grep -q -- '-tags=.*libdeflate' && inflater=libdeflate
base=${BASE:+$(realpath "$BASE")}
work=$(realpath -m "${1:-${TMPDIR:-/tmp}/vmconv-limit}")
mkdir -p "$work"
xo=$repo/formats/xva/testdata/xo
[ -d "$xo/node_modules/@xen-orchestra/xva" ] || bash formats/xva/ci-setup.sh >/dev/null
cores=$(nproc)

# The image: 1 GiB ext4 holding ~550 MB of /usr (the same file list every
# time on a given host), the rest free or holes.
img=$work/img.raw
if [ ! -s "$img" ]; then
	echo "== building $img" >&2
	rm -rf "$work/stage"; mkdir -p "$work/stage"
	(cd /usr && find bin share lib -type f -printf '%s %p\n' 2>/dev/null | sort -k2 |
		awk -v b=$((520 << 20)) '{t += $1; if (t > b) exit; print $2}' |
		tar -cf - -T - 2>/dev/null) | tar -xf - -C "$work/stage"
	mkfs.ext4 -q -F -d "$work/stage" "$img" 1G
	rm -rf "$work/stage"
fi
cd "$work"
# Inputs made by the peers' own tools, so neither side reads its own output.
[ -s in-stream.vmdk ] || qemu-img convert -O vmdk -o subformat=streamOptimized img.raw in-stream.vmdk
[ -s disk.vmdk ] || qemu-img convert -O vmdk -o subformat=monolithicSparse img.raw disk.vmdk
printf '%s\n' '.encoding = "UTF-8"' 'config.version = "8"' 'virtualHW.version = "14"' \
	'displayName = "bench"' 'guestOS = "debian11-64"' 'memsize = "1024"' \
	'scsi0.present = "TRUE"' 'scsi0.virtualDev = "lsilogic"' \
	'scsi0:0.present = "TRUE"' 'scsi0:0.fileName = "disk.vmdk"' >vm.vmx
printf '{"vm": {"name_label": "bench", "memory": 1073741824, "nCpus": 1, "firmware": "bios"}, "disks": [{"path": "%s", "name_label": "disk"}]}\n' \
	"$img" >xo.json
echo "== image: $(du -h --apparent-size img.raw | cut -f1) virtual, $(du -m img.raw | cut -f1) MiB allocated; $cores cores; $rounds rounds" >&2

# CPU floors: seconds of one core for all grains divided by the cores, and
# seconds for all grains with every core running the codec ("ONE ALL").
echo "== codec throughput (one core, then all $cores; inflate: $inflater)" >&2
codec_bench() {
	(cd "$repo" && VMCONV_BENCH_STREAM=$work/in-stream.vmdk VMCONV_BENCH_RAW=$img \
		go test -tags "${inflater/klauspost/}" ./formats/vmdk/ -run '^$' -bench "$1" -cpu "$2" -benchtime 3x)
}
# (-bench patterns with a sub-benchmark level skip benchmarks without
# sub-benchmarks: one run per codec.)
inf_one=$(codec_bench "^BenchmarkInflateGrains\$/^$inflater\$" 1)
def_one=$(codec_bench "^BenchmarkDeflateGrains\$" 1)
inf_all=$(codec_bench "^BenchmarkInflateGrainsAllCores\$/^$inflater\$" "$cores")
def_all=$(codec_bench "^BenchmarkDeflateGrainsAllCores\$" "$cores")
# seconds NAME DIVISOR: a benchmark's seconds per op (its -N suffix dropped).
seconds() { awk -v n="$1" -v d="$2" '{sub(/-[0-9]+$/, "", $1)} $1 == n {printf "%.2f", $3 / 1e9 / d}'; }
inflate_floor="$(seconds "BenchmarkInflateGrains/$inflater" "$cores" <<<"$inf_one") $(seconds "BenchmarkInflateGrainsAllCores/$inflater" 1 <<<"$inf_all")"
deflate_floor="$(seconds BenchmarkDeflateGrains "$cores" <<<"$def_one") $(seconds BenchmarkDeflateGrainsAllCores 1 <<<"$def_all")"
echo "== CPU floors (one core ÷ $cores, all $cores): inflate $inflate_floor s, deflate $deflate_floor s" >&2

# measure CMD: prints "seconds maxrss_kib cpu_seconds" of one run, after a
# sync; cpu_seconds is user + system time of the command and its children.
measure() {
	sync
	/usr/bin/time -v -o time.out bash -c "$1" >/dev/null 2>err.out || { cat err.out >&2; return 1; }
	awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, a, ":"); t = 0; for (i = 1; i <= n; i++) t = t * 60 + a[i]; s = t}
		/(User|System) time \(seconds\)/ {c += $2}
		/Maximum resident set size/ {m = $2} END {print s, m, c}' time.out
}
# stats: "median min max" of the numbers on stdin.
stats() { sort -n | awk '{a[NR] = $1} END {printf "%.2f %.2f %.2f\n", a[int((NR + 1) / 2)], a[1], a[NR]}'; }
spread() { printf '%s (%s–%s)' "$1" "$2" "$3"; }

echo "| case | peer | peer s | vmconv s | peer ÷ vmconv | write floor s | CPU floor s (1 core ÷ $cores / all $cores) | vmconv ÷ floor | vmconv CPU s (cores busy) | shared-core floor s (1 core ÷ $cores / all $cores) | vmconv ÷ shared | RSS vmconv / peer MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
# row NAME PEERNAME 'peer cmd' 'vmconv args' OUT 'CPUFLOOR_ONE CPUFLOOR_ALL'
row() {
	local name=$1 peer=$2 theirs=$3 ours=$4 out=$5 cpu_one cpu_all
	read -r cpu_one cpu_all <<<"$6"
	[ -z "${CASES:-}" ] || grep -qE -- "$CASES" <<<"$name" || return 0
	local tp=() tv=() tf=() tb=() cv=() cf=() rp=0 rv=0 s m c mib same=""
	for r in $(seq "$rounds"); do
		rm -rf out.* floor.bin
		read -r s m _ < <(measure "$theirs"); tp+=("$s"); rp=$((m > rp ? m : rp))
		rm -rf out.*
		read -r s m c < <(measure "$vmconv convert $ours"); tv+=("$s"); cv+=("$c"); rv=$((m > rv ? m : rv))
		mib=$(du -m "$out" | cut -f1)
		if [ -n "$base" ]; then
			[ "$r" = 1 ] && "$vmconv" digest "$out" >want.sha
			rm -rf out.*
			read -r s m _ < <(measure "$base convert $ours"); tb+=("$s")
			[ "$r" = 1 ] && { "$vmconv" digest "$out" | cmp -s - want.sha && same=identical || same=DIFFERENT; }
		fi
		rm -rf out.*
		read -r s m c < <(measure "dd if=/dev/zero of=floor.bin bs=1M count=$mib conv=fdatasync status=none"); tf+=("$s"); cf+=("$c")
	done
	rm -f floor.bin
	local p v f ratio cpu="–" shared="–" vshared="–" vc fc
	read -r p pmin pmax < <(printf '%s\n' "${tp[@]}" | stats)
	read -r v vmin vmax < <(printf '%s\n' "${tv[@]}" | stats)
	read -r f fmin fmax < <(printf '%s\n' "${tf[@]}" | stats)
	read -r vc _ < <(printf '%s\n' "${cv[@]}" | stats)
	read -r fc _ < <(printf '%s\n' "${cf[@]}" | stats)
	# vmconv ÷ max(write floor, CPU floor), for each CPU floor.
	ratio() { awk -v v="$v" -v f="$f" -v c="${1:-0}" 'BEGIN {m = (f > c) ? f : c; printf "%.2f×", (m > 0) ? v / m : 0}'; }
	ratio=$(ratio "$cpu_one")
	if [ -n "$cpu_one" ]; then
		cpu="$cpu_one / $cpu_all"
		ratio="$ratio / $(ratio "$cpu_all")"
		# The codec and the write path share the cores: the codec's one-core
		# seconds and dd's own CPU seconds, together over the cores.
		local s_one s_all
		s_one=$(awk -v c="$cpu_one" -v d="$fc" -v n="$cores" 'BEGIN {printf "%.2f", c + d / n}')
		s_all=$(awk -v c="$cpu_all" -v d="$fc" -v n="$cores" 'BEGIN {printf "%.2f", c + d / n}')
		shared="$s_one / $s_all"
		vshared=$(awk -v v="$v" -v a="$s_one" -v b="$s_all" 'BEGIN {printf "%.2f× / %.2f×", (a > 0) ? v / a : 0, (b > 0) ? v / b : 0}')
	fi
	local busy
	busy=$(awk -v c="$vc" -v v="$v" -v n="$cores" 'BEGIN {printf "%.2f (%.0f %%)", c, (v > 0) ? 100 * c / (v * n) : 0}')
	printf '| %s | %s | %s | %s | %.2f× | %s | %s | %s | %s | %s | %s | %d / %d |\n' "$name" "$peer" \
		"$(spread "$p" "$pmin" "$pmax")" "$(spread "$v" "$vmin" "$vmax")" \
		"$(awk -v a="$p" -v b="$v" 'BEGIN {print (b > 0) ? a / b : 0}')" \
		"$(spread "$f" "$fmin" "$fmax")" "$cpu" "$ratio" "$busy" "$shared" "$vshared" $((rv / 1024)) $((rp / 1024))
	if [ -n "$base" ]; then
		read -r s _ < <(printf '%s\n' "${tb[@]}" | stats)
		echo "|  ↳ BASE build | | | $s ($(printf '%s\n' "${tb[@]}" | stats | awk '{print $2 "–" $3}')) | | | | output $same | | | | |"
	fi
}

XO="node $xo/write-xva.mjs"
row "raw → streamOptimized" qemu-img \
	"qemu-img convert -O vmdk -o subformat=streamOptimized img.raw out.vmdk && sync -d out.vmdk" \
	"-O vmdk -o subformat=streamOptimized img.raw out.vmdk" out.vmdk "$deflate_floor"
row "streamOptimized → raw" qemu-img \
	"qemu-img convert -O raw in-stream.vmdk out.raw && sync -d out.raw" \
	"in-stream.vmdk out.raw" out.raw "$inflate_floor"
row "raw → monolithicSparse" qemu-img \
	"qemu-img convert -O vmdk -o subformat=monolithicSparse img.raw out.vmdk && sync -d out.vmdk" \
	"-O vmdk -o subformat=monolithicSparse img.raw out.vmdk" out.vmdk ""
row "VMX → XVA" "Xen Orchestra" \
	"$XO xo.json out.xva && sync -d out.xva" \
	"vm.vmx out.xva" out.xva ""
rm -rf out.* time.out err.out want.sha
