#!/usr/bin/env bash
# Boot benchmark: the same guest (Debian's stock kernel, a busybox initramfs
# that mounts an ext4 disk and hashes a 16 MiB file) to its login marker, with
# the disk — a monolithicSparse VMDK written by qemu-img — served by vmconv's
# NBD server from a copy-on-write overlay (the QEMU verification engine)
# against QEMU opening the same VMDK with its own driver. Same kernel file (the
# ELF unpacked from the bzImage, entered at its PVH entry, as the engine does),
# initrd, command line and machine (-M microvm, KVM with hardware
# virtualization, TCG otherwise); rounds alternate after one warm-up of each.
# Prints medians of the time from QEMU's start to the marker and their ratio
# (nbd / qemu-vmdk; target <= 1.1), and the time the guest takes to read the
# whole disk with dd (O_DIRECT), which isolates the disk path, and the CPU time
# (vmconv + QEMU) to the marker, which other load on the host disturbs less.
# Usage: bench/boot-nbd.sh   (env: ROUNDS=5)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
status=0
out=$(VMCONV_BENCH_BOOT_ROUNDS=$rounds go test -count=1 -timeout 60m -run '^TestBootBenchNBD$' -v ./vmm/qemu) || status=$?
printf '%s\n' "$out" | grep -E '^(boot-nbd:|\s+bench_test.go:.*round|--- |FAIL|ok)' || true
exit $status
