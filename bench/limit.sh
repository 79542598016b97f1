#!/usr/bin/env bash
# vmconv against its peers and against the physical limit, durable on both
# sides, in one run. For each case:
#   peer     qemu-img convert (or Xen Orchestra's XVA writer, as bench/xva.sh
#            drives it) followed by `sync -d OUT`, so its data is on disk too
#   vmconv   vmconv convert (fsyncs its output before renaming it into place)
#   floors   write: dd if=/dev/zero of=F bs=1M count=<vmconv output's
#            allocated MiB> conv=fdatasync, timed in the same round;
#            CPU: one core's deflate/inflate throughput on the same grains
#            (formats/vmdk's codec benchmarks, -cpu 1, every grain once, in
#            the same round as vmconv's run) divided by the cores,
#            with the inflater the vmconv binary was built with (libdeflate
#            when built with -tags libdeflate, else klauspost); and beside it
#            the same codec measured running on every core at once
#            (*AllCores benchmarks, -cpu <cores>), which is what the cores
#            really give when they share caches or are SMT siblings
#   floor    the larger of write and CPU floor; vmconv/floor is how far from
#            the limit, against the one-core÷cores floor and the all-cores one,
#            taken in each round and given as the rounds' median (spread)
#   CPU      vmconv's user + system seconds, and how busy that kept the cores
#            (CPU ÷ (wall × cores)): near 100 % the run is CPU-bound
#   shared   for the codec cases, the floor when the codec and the write path
#            share the cores: the codec's one-core seconds plus dd's own CPU
#            seconds (its copy into the page cache), over the cores, with the
#            codec's one-core÷cores and its all-cores seconds as above, and
#            vmconv's time over it, per round as for the floor. It is still
#            low: the kernel's writeback threads are not counted
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
# seconds for all grains with every core running the codec. They are timed in
# every round beside vmconv's run, from one test binary built here: this
# shared host's speed drifts by tens of percent within minutes, and a floor
# timed once at the start would compare vmconv with another machine.
echo "== codec benchmark binary (inflate: $inflater)" >&2
(cd "$repo" && go test -c -tags "${inflater/klauspost/}" -o "$work/vmdk.test" ./formats/vmdk/)
# codec_bench PATTERN CPUS: one pass of the benchmarks matching PATTERN.
codec_bench() {
	VMCONV_BENCH_STREAM=$work/in-stream.vmdk VMCONV_BENCH_RAW=$img "$work/vmdk.test" \
		-test.run '^$' -test.bench "$1" -test.cpu "$2" -test.benchtime 1x
}
# codec_seconds CODEC: "ONE ALL", one core's seconds for all grains ÷ cores
# and all cores' seconds (-benchtime 1x: each benchmark inflates or deflates
# every grain once).
codec_seconds() {
	local one all
	case $1 in
	inflate) one="^BenchmarkInflateGrains\$/^$inflater\$" all="^BenchmarkInflateGrainsAllCores\$/^$inflater\$" ;;
	deflate) one="^BenchmarkDeflateGrains\$" all="^BenchmarkDeflateGrainsAllCores\$" ;;
	esac
	sync
	{ codec_bench "$one" 1; codec_bench "$all" "$cores"; } | awk -v n="$cores" '$1 ~ /^Benchmark/ && $3 > 0 {sub(/-[0-9]+$/, "", $1); if ($1 ~ /AllCores/) a = $3 / 1e9; else o = $3 / 1e9 / n}
		END {printf "%.3f %.3f\n", o, a}'
}

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
# median X...: the median of the arguments.
median() { printf '%s\n' "$@" | stats | awk '{print $1}'; }
# over_max V F C: V ÷ the larger of F and C (vmconv over its floor).
over_max() { awk -v v="$1" -v f="$2" -v c="$3" 'BEGIN {m = (f > c) ? f : c; printf "%.3f", v / m}'; }
# over_shared V C D: V ÷ (C + D ÷ cores), the codec's and dd's CPU seconds
# sharing the cores.
over_shared() { awk -v v="$1" -v c="$2" -v d="$3" -v n="$cores" 'BEGIN {printf "%.3f", v / (c + d / n)}'; }

echo "| case | peer | peer s | vmconv s | peer ÷ vmconv | write floor s | CPU floor s (1 core ÷ $cores / all $cores) | vmconv ÷ floor (1 core ÷ $cores / all $cores) | vmconv CPU s (cores busy) | vmconv ÷ shared-core floor (1 core ÷ $cores / all $cores) | RSS vmconv / peer MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
# row NAME PEERNAME 'peer cmd' 'vmconv args' OUT [CODEC]
# CODEC (inflate or deflate) adds the CPU floors, timed in each round. Every
# ratio is taken within its round and the table gives their median and spread.
row() {
	local name=$1 peer=$2 theirs=$3 ours=$4 out=$5 codec=${6:-}
	[ -z "${CASES:-}" ] || grep -qE -- "$CASES" <<<"$name" || return 0
	local tp=() tv=() tf=() tb=() cv=() c1=() ca=() r1=() ra=() s1=() sa=() rp=0 rv=0 s m c vt ft fc mib one all same=""
	for r in $(seq "$rounds"); do
		rm -rf out.* floor.bin
		read -r s m _ < <(measure "$theirs"); tp+=("$s"); rp=$((m > rp ? m : rp))
		rm -rf out.*
		read -r vt m c < <(measure "$vmconv convert $ours"); tv+=("$vt"); cv+=("$c"); rv=$((m > rv ? m : rv))
		mib=$(du -m "$out" | cut -f1)
		if [ -n "$base" ]; then
			[ "$r" = 1 ] && "$vmconv" digest "$out" >want.sha
			rm -rf out.*
			read -r s m _ < <(measure "$base convert $ours"); tb+=("$s")
			[ "$r" = 1 ] && { "$vmconv" digest "$out" | cmp -s - want.sha && same=identical || same=DIFFERENT; }
		fi
		rm -rf out.*
		read -r ft m fc < <(measure "dd if=/dev/zero of=floor.bin bs=1M count=$mib conv=fdatasync status=none"); tf+=("$ft")
		one=0 all=0
		if [ -n "$codec" ]; then
			read -r one all < <(codec_seconds "$codec"); c1+=("$one"); ca+=("$all")
			# The codec and the write path share the cores: the codec's
			# seconds and dd's own CPU seconds, together over the cores.
			s1+=("$(over_shared "$vt" "$one" "$fc")"); sa+=("$(over_shared "$vt" "$all" "$fc")")
		fi
		# vmconv ÷ max(write floor, CPU floor), for each CPU floor.
		r1+=("$(over_max "$vt" "$ft" "$one")"); ra+=("$(over_max "$vt" "$ft" "$all")")
	done
	rm -f floor.bin
	local p v f vc ratio cpu="–" shared="–"
	read -r p pmin pmax < <(printf '%s\n' "${tp[@]}" | stats)
	read -r v vmin vmax < <(printf '%s\n' "${tv[@]}" | stats)
	read -r f fmin fmax < <(printf '%s\n' "${tf[@]}" | stats)
	vc=$(median "${cv[@]}")
	ratio=$(printf '%s\n' "${r1[@]}" | stats | awk '{printf "%.2f× (%.2f–%.2f)", $1, $2, $3}')
	if [ -n "$codec" ]; then
		cpu="$(median "${c1[@]}") / $(median "${ca[@]}")"
		ratio="$ratio / $(median "${ra[@]}")×"
		shared="$(median "${s1[@]}")× / $(median "${sa[@]}")×"
	fi
	local busy
	busy=$(awk -v c="$vc" -v v="$v" -v n="$cores" 'BEGIN {printf "%.2f (%.0f %%)", c, (v > 0) ? 100 * c / (v * n) : 0}')
	printf '| %s | %s | %s | %s | %.2f× | %s | %s | %s | %s | %s | %d / %d |\n' "$name" "$peer" \
		"$(spread "$p" "$pmin" "$pmax")" "$(spread "$v" "$vmin" "$vmax")" \
		"$(awk -v a="$p" -v b="$v" 'BEGIN {print (b > 0) ? a / b : 0}')" \
		"$(spread "$f" "$fmin" "$fmax")" "$cpu" "$ratio" "$busy" "$shared" $((rv / 1024)) $((rp / 1024))
	if [ -n "$base" ]; then
		read -r s _ < <(printf '%s\n' "${tb[@]}" | stats)
		echo "|  ↳ BASE build | | | $s ($(printf '%s\n' "${tb[@]}" | stats | awk '{print $2 "–" $3}')) | | | | output $same | | | |"
	fi
}

XO="node $xo/write-xva.mjs"
row "raw → streamOptimized" qemu-img \
	"qemu-img convert -O vmdk -o subformat=streamOptimized img.raw out.vmdk && sync -d out.vmdk" \
	"-O vmdk -o subformat=streamOptimized img.raw out.vmdk" out.vmdk deflate
row "streamOptimized → raw" qemu-img \
	"qemu-img convert -O raw in-stream.vmdk out.raw && sync -d out.raw" \
	"in-stream.vmdk out.raw" out.raw inflate
row "raw → monolithicSparse" qemu-img \
	"qemu-img convert -O vmdk -o subformat=monolithicSparse img.raw out.vmdk && sync -d out.vmdk" \
	"-O vmdk -o subformat=monolithicSparse img.raw out.vmdk" out.vmdk
row "VMX → XVA" "Xen Orchestra" \
	"$XO xo.json out.xva && sync -d out.xva" \
	"vm.vmx out.xva" out.xva
rm -rf out.* time.out err.out want.sha
