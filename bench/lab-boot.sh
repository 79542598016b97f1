#!/usr/bin/env bash
# Boot benchmark on hardware virtualization: vmconv's built-in engine
# (vmm.Verify through vmm/internal/bootbench) against
# qemu-system-x86_64 -accel kvm -M microvm -cpu host, side by side in one
# run, for three guests:
#
#   probe    the probe guest (vmm/testdata/probe) to "probe: all done"
#   busybox  Debian's stock kernel with a busybox initramfs to its init
#   guest    the real Debian guest (testdata/guest/build.sh) to "login:"
#
# Same kernel (the ELF unpacked from the bzImage, which QEMU enters through
# its PVH note and vmconv through the 64-bit boot protocol), initrd, command
# line, memory, vCPUs and raw disk (QEMU opens it itself, snapshot=on; vmconv
# puts it behind its overlay). Wall time from process start to the marker and
# the VMM process's peak RSS; rounds alternate; medians of ROUNDS (default 3).
#
# On a host without a hardware-backed /dev/kvm the measuring part runs in the
# KVM lab (vmm/lab: QEMU's TCG emulating AMD-V), so absolute times are those
# of a nested guest under TCG; compare the ratio.
#
# Usage: bench/lab-boot.sh   (env: ROUNDS=3 CPUS=2 CASES="probe busybox guest")
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
cpus=${CPUS:-2}
cases=${CASES:-probe busybox guest}

hardware() { grep -qw -e svm -e vmx /proc/cpuinfo && [ -w /dev/kvm ]; }

if [ -z "${LAB_BOOT_WORK:-}" ]; then
	# Host part: build and gather everything, then measure here or in the lab.
	work=$(mktemp -d /var/tmp/vmconv-lab-boot.XXXXXX)
	trap 'rm -rf "$work"' EXIT
	go build -o "$work/bootbench" ./vmm/internal/bootbench
	sh vmm/testdata/probe/build.sh "$work/probe.elf" >/dev/null 2>&1
	head -c $((256 << 10)) /dev/urandom >"$work/small.raw"
	root=$(sh vmm/qemu/testdata/fetch-kernel.sh)
	"$work/bootbench" -pvh "$(ls "$root"/boot/vmlinuz-* | head -1)" >"$work/debian.path"
	# The busybox initramfs: its init says so and powers off.
	mkdir -p "$work/ir/bin" "$work/ir/dev" "$work/ir/proc"
	cp /bin/busybox "$work/ir/bin/busybox"
	mknod "$work/ir/dev/console" c 5 1
	printf '#!/bin/busybox sh\n/bin/busybox echo "bench: init reached"\n/bin/busybox poweroff -f\n' >"$work/ir/init"
	chmod 755 "$work/ir/init"
	(cd "$work/ir" && find . | cpio -o -H newc 2>/dev/null) >"$work/busybox.cpio"
	if [[ " $cases " == *" guest "* ]]; then
		guest=$(sh testdata/guest/build.sh)
		"$work/bootbench" -pvh "$guest/vmlinuz" >"$work/guest.path"
		echo "$guest" >"$work/guest.dir"
	fi
	# QEMU's microvm firmware, as a file (Debian ships it as a symlink).
	mkdir -p "$work/bios"
	cp -L /usr/share/qemu/bios-microvm.bin "$work/bios/"
	export LAB_BOOT_WORK=$work ROUNDS=$rounds CPUS=$cpus CASES=$cases
	if hardware; then
		bash bench/lab-boot.sh
	else
		go run ./vmm/lab/kvmlab -- bash bench/lab-boot.sh
	fi
	exit
fi

# Measuring part: on hardware virtualization (here or in the lab).
work=$LAB_BOOT_WORK
hardware || { echo "lab-boot: /dev/kvm is not hardware-backed here" >&2; exit 1; }
# Fifos and scratch files on a local filesystem (the lab's 9p share has no fifos).
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# ours KERNEL INITRD DISK CMDLINE MEM MARKER: "<ms> <peak RSS KiB>" or "fail".
ours() {
	local t0 t1 initrd=()
	[ -n "$2" ] && initrd=(-initrd "$2")
	t0=$(date +%s%N)
	if /usr/bin/time -f '%M' -o "$scratch/rss" "$work/bootbench" -kernel "$1" "${initrd[@]}" -disk "$3" \
		-append "$4" -memory "$5" -cpus "$cpus" -expect "$6" -timeout 15m >"$scratch/console" 2>"$scratch/err"; then
		t1=$(date +%s%N)
		echo "$(((t1 - t0) / 1000000)) $(tail -n 1 "$scratch/rss")"
	else
		echo fail
		{ tail -n 20 "$scratch/console"; cat "$scratch/err"; } | sed 's/^/    ours: /' >&2
	fi
}

# theirs: the same for QEMU/KVM, stopped once its console shows the marker
# (GNU time still reports the peak RSS of a child killed by a signal).
theirs() {
	local t0 t1 pid initrd=()
	[ -n "$2" ] && initrd=(-initrd "$2")
	rm -f "$scratch/con"
	mkfifo "$scratch/con"
	t0=$(date +%s%N)
	/usr/bin/time -f '%M' -o "$scratch/rssq" qemu-system-x86_64 -accel kvm -M microvm -cpu host -m "$5" -smp "$cpus" -L "$work/bios" \
		-nodefaults -no-user-config -display none -serial stdio -no-reboot \
		-kernel "$1" "${initrd[@]}" -append "$4" \
		-drive id=d0,file="$3",format=raw,if=none,snapshot=on -device virtio-blk-device,drive=d0 \
		</dev/null >"$scratch/con" 2>"$scratch/err" &
	pid=$!
	# A prompt has no newline after it: read bytes, not lines.
	if python3 -c 'import os, sys
want = sys.argv[1].encode()
buf = b""
while want not in buf:
    b = os.read(0, 65536)
    if not b:
        sys.exit(1)
    buf = buf[-64:] + b' "$6" <"$scratch/con"; then
		t1=$(date +%s%N)
		pkill -P "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		echo "$(((t1 - t0) / 1000000)) $(tail -n 1 "$scratch/rssq")"
	else
		echo fail
		sed 's/^/    qemu: /' "$scratch/err" | tail -n 5 >&2
		pkill -P "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
}

med() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

rows=()
for c in $cases; do
	case $c in
	probe) args=("$work/probe.elf" "" "$work/small.raw" "console=ttyS0" 64 "probe: all done") ;;
	busybox) args=("$(cat "$work/debian.path")" "$work/busybox.cpio" "$work/small.raw" "console=ttyS0 panic=-1" 512 "bench: init reached") ;;
	guest)
		g=$(cat "$work/guest.dir")
		args=("$(cat "$work/guest.path")" "$g/initrd.img" "$g/disk.raw" "$(cat "$g/cmdline") console=ttyS0" 1024 "login:")
		;;
	*) echo "lab-boot: unknown case $c" >&2; exit 2 ;;
	esac
	ot=() orss=() qt=() qrss=()
	for i in $(seq "$rounds"); do
		o=$(ours "${args[@]}")
		q=$(theirs "${args[@]}")
		echo "$c round $i: vmconv ${o} | qemu/kvm ${q}   (ms, peak RSS KiB)"
		[ "$o" = fail ] || { ot+=("${o% *}"); orss+=("${o#* }"); }
		[ "$q" = fail ] || { qt+=("${q% *}"); qrss+=("${q#* }"); }
	done
	if [ ${#ot[@]} -eq 0 ] || [ ${#qt[@]} -eq 0 ]; then
		rows+=("| $c | ${#ot[@]} of $rounds passed | ${#qt[@]} of $rounds passed | – | – | – |")
		continue
	fi
	mo=$(med "${ot[@]}") mq=$(med "${qt[@]}") ro=$(med "${orss[@]}") rq=$(med "${qrss[@]}")
	rows+=("| $c | $(echo "scale=2; $mo / 1000" | bc) | $(echo "scale=2; $mq / 1000" | bc) | $(echo "scale=2; $mo / $mq" | bc)× | $((ro / 1024)) | $((rq / 1024)) |")
done
echo
echo "| guest | vmconv s | QEMU/KVM s | vmconv ÷ QEMU | vmconv peak RSS MiB | QEMU peak RSS MiB |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
