#!/usr/bin/env bash
# Boot benchmark: wall time from process start to the probe guest's final
# marker ("probe: all done"), vmconv's VMM (vmm.Verify through
# vmm/internal/bootbench) against qemu-system-x86_64 -M microvm booting the
# same probe ELF through its PVH note (KVM when it works, else TCG). Same
# memory, vCPUs and disk; rounds alternate after one warm-up of each.
# Prints per-round times, medians, the vmconv/qemu ratio (target <= 0.5) and
# peak RSS (target: below guest memory + 64 MiB).
# Usage: bench/boot.sh   (env: ROUNDS=5 MEM=64 CPUS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
mem=${MEM:-64}
cpus=${CPUS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sh vmm/testdata/probe/build.sh "$work/probe.elf" 2>/dev/null
go build -o "$work/bootbench" ./vmm/internal/bootbench
head -c $((256 << 10)) /dev/urandom >"$work/disk.raw"

# run NAME CMD...: prints "<ms> <peak RSS KiB>" or "fail" for one boot.
run() {
	local t0 t1 rss
	t0=$(date +%s%N)
	if /usr/bin/time -f '%M' -o "$work/rss" "$@" >"$work/out" 2>"$work/err" && grep -q 'probe: all done' "$work/out" "$work/err"; then
		t1=$(date +%s%N)
		rss=$(tail -n 1 "$work/rss")
		echo "$(((t1 - t0) / 1000000)) $rss"
	else
		echo fail
	fi
}

vmconv_cmd=("$work/bootbench" -q -kernel "$work/probe.elf" -disk "$work/disk.raw" -memory "$mem" -cpus "$cpus" -append console=ttyS0)
# QEMU prints the console to stdout; the probe triple-faults after its final
# line when no i8042 answers, which -no-reboot turns into an exit.
qemu_common=(-M microvm,acpi=off -m "$mem" -smp "$cpus" -nodefaults -no-user-config -display none -serial stdio
	-no-reboot -global virtio-mmio.force-legacy=false -kernel "$work/probe.elf" -append console=ttyS0
	-drive "id=d0,file=$work/disk.raw,format=raw,if=none,snapshot=on" -device virtio-blk-device,drive=d0)
qemu_accel=(-accel kvm -cpu max,-arch-capabilities)
if [ "$(run qemu-system-x86_64 "${qemu_accel[@]}" "${qemu_common[@]}")" = fail ]; then
	qemu_accel=(-accel tcg -cpu max)
fi
echo "boot: qemu accelerator: ${qemu_accel[*]}"
if [ "$(run "${vmconv_cmd[@]}")" = fail ]; then
	echo "boot: vmconv: cannot boot here: $(cat "$work/err")"
	vmconv_ok=0
else
	vmconv_ok=1
fi

v=() q=()
for i in $(seq "$rounds"); do
	if [ $vmconv_ok = 1 ]; then
		r=$(run "${vmconv_cmd[@]}")
		echo "round $i vmconv: $r"
		v+=("$r")
	fi
	r=$(run qemu-system-x86_64 "${qemu_accel[@]}" "${qemu_common[@]}")
	echo "round $i qemu:   $r"
	q+=("$r")
done

qm=$(printf '%s\n' "${q[@]}" | grep -v fail | awk '{print $1}' | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "n/a"}')
qr=$(printf '%s\n' "${q[@]}" | grep -v fail | awk '{print $2}' | sort -n | tail -n 1)
echo "boot: qemu   median ${qm} ms, peak RSS $((${qr:-0} / 1024)) MiB (guest ${mem} MiB)"
if [ $vmconv_ok = 1 ]; then
	vm=$(printf '%s\n' "${v[@]}" | grep -v fail | awk '{print $1}' | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "n/a"}')
	vr=$(printf '%s\n' "${v[@]}" | grep -v fail | awk '{print $2}' | sort -n | tail -n 1)
	echo "boot: vmconv median ${vm} ms, peak RSS $((${vr:-0} / 1024)) MiB (guest ${mem} MiB, target < $((mem + 64)))"
	echo "boot: ratio vmconv/qemu $(awk -v a="$vm" -v b="$qm" 'BEGIN {printf "%.2f", a / b}') (target <= 0.5)"
else
	echo "boot: vmconv not measured (see above)"
fi

echo
echo "== the real Debian guest over vmconv's NBD vs QEMU's own VMDK driver (bench/boot-guest.sh)"
if [ -n "${SKIP_GUEST:-}" ]; then echo "skipped (SKIP_GUEST set)"; else bench/boot-guest.sh; fi
