#!/bin/sh
# build.sh OUT: build the probe guest ELF with gcc (the tests call this).
set -eu
dir=$(dirname "$0")
out=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CFLAGS="-O2 -ffreestanding -nostdlib -mgeneral-regs-only -mno-red-zone -static -fno-pic -no-pie \
 -fno-stack-protector -fno-asynchronous-unwind-tables -fcf-protection=none -Wall -Werror"
gcc $CFLAGS -c "$dir/entry.S" -o "$tmp/entry.o"
gcc $CFLAGS -c "$dir/probe.c" -o "$tmp/probe.o"
gcc $CFLAGS -Wl,-T,"$dir/probe.ld" -Wl,--build-id=none -Wl,-z,noexecstack -o "$out" "$tmp/entry.o" "$tmp/probe.o"
