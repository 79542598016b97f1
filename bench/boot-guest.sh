#!/usr/bin/env bash
# Boot benchmark row: the real Debian guest (testdata/guest/build.sh) to its
# login prompt, `vmconv verify --engine qemu` (disk over vmconv's NBD from a
# copy-on-write overlay) against QEMU opening the same VMDK with its own
# driver. Same kernel (the ELF unpacked from the guest's bzImage, entered at
# its PVH entry, as the engine does), initrd, command line, memory, vCPUs and
# machine (-M microvm, TCG on hosts without hardware virtualization). Rounds
# alternate; prints per-round seconds, medians and the ratio (target <= 1.1).
# Usage: bench/boot-guest.sh   (env: ROUNDS=3, VMCONV=bin/vmconv)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
vmconv=$(realpath "${VMCONV:-bin/vmconv}")
go build -o "$vmconv" ./cmd/vmconv
guest=$(sh testdata/guest/build.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The command line vmconv boots (the guest's grub.cfg, adjusted) and the
# unpacked kernel it caches.
"$vmconv" verify --engine qemu --output json --timeout 15m "$guest/guest.vmx" >"$work/warm.json"
cmdline=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cmdline"])' "$work/warm.json")
sum=$(sha256sum "$guest/vmlinuz" | cut -d' ' -f1)
elf=${XDG_CACHE_HOME:-$HOME/.cache}/vmconv/vmlinux/$sum.elf
[ -f "$elf" ] || { echo "no unpacked kernel at $elf" >&2; exit 1; }
accel="-accel tcg -cpu max"
grep -qw -e vmx -e svm /proc/cpuinfo && [ -w /dev/kvm ] && accel="-enable-kvm -cpu host"

ours() {
	"$vmconv" verify --engine qemu --timeout 15m "$guest/guest.vmx" >/dev/null
}
theirs() {
	# QEMU reads the VMDK itself; it is stopped at the login prompt.
	rm -f "$work/con"
	mkfifo "$work/con"
	timeout 900 qemu-system-x86_64 $accel -M microvm -m 1024 -smp 2 -nodefaults -no-user-config \
		-nographic -serial stdio -no-reboot -kernel "$elf" -initrd "$guest/initrd.img" -append "$cmdline" \
		-drive id=d0,file="$guest/guest.vmdk",format=vmdk,if=none,snapshot=on \
		-device virtio-blk-device,drive=d0 </dev/null >"$work/con" 2>/dev/null &
	local pid=$!
	# The prompt has no newline after it, so a line reader would wait forever.
	python3 -c 'import os, sys
buf = b""
while b"login:" not in buf:
    b = os.read(0, 65536)
    if not b:
        sys.exit(1)
    buf = buf[-16:] + b' <"$work/con" || true
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
secs() { local t0=$(date +%s%N); "$@"; echo "scale=2; ($(date +%s%N) - t0) / 1000000000" | sed "s/t0/$t0/" | bc; }

a=() b=()
for i in $(seq "$rounds"); do
	a+=("$(secs ours)")
	b+=("$(secs theirs)")
	echo "round $i: vmconv+NBD ${a[-1]} s, QEMU's VMDK driver ${b[-1]} s"
done
med() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ma=$(med "${a[@]}") mb=$(med "${b[@]}")
echo "real Debian guest to login: vmconv verify (NBD) median ${ma} s, QEMU VMDK median ${mb} s, ratio $(echo "scale=3; $ma / $mb" | bc)"
