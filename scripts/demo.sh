#!/usr/bin/env bash
# The built-in example: make a sample disk, convert it through every format
# vmconv writes and back, and show that the content digest never changes.
set -euo pipefail
vmconv=$(realpath "${1:-bin/vmconv}")
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${DEMO_DIR:-$(mktemp -d /tmp/vmconv-demo.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
cd "$work"
echo "== working in $work"

# A 256 MiB sample disk that boots: an MBR and a FAT32 /boot holding the
# probe kernel (built by gcc from vmm/testdata/probe) and a grub.cfg naming
# it; then some files' worth of data, holes, a lone non-zero byte and a tail
# that is not a multiple of 1 MiB (VMDK sizes are whole sectors).
sh "$repo/vmm/testdata/probe/build.sh" probe.elf >/dev/null
(cd "$repo" && go run ./scripts/demodisk "$work/sample.raw" $((256 * 1024 * 1024 + 25 * 512)) "$work/probe.elf")
head -c $((24 * 1024 * 1024)) /dev/urandom | dd of=sample.raw bs=1M seek=64 conv=notrunc status=none
dd if=/dev/zero bs=1M count=8 status=none | tr '\0' 'v' | dd of=sample.raw bs=1M seek=100 conv=notrunc status=none
printf 'X' | dd of=sample.raw bs=1 seek=$((200 * 1024 * 1024 + 4097)) conv=notrunc status=none

# boots FILE: boot what FILE holds to the probe's last line, with the
# built-in engine where /dev/kvm is hardware-backed, else QEMU.
can_boot=1
if ! command -v qemu-system-x86_64 >/dev/null && ! grep -qw -e svm -e vmx /proc/cpuinfo; then
	can_boot=0
	echo "== (no hardware virtualization and no QEMU here: install qemu-system-x86 to see every copy boot)"
fi
boots() {
	[ $can_boot = 1 ] || return 0
	"$vmconv" verify --expect 'probe: all done' --memory 64 --timeout 1m "$1" | sed 's/^/  boot: /'
}

"$vmconv" info sample.raw
want=$("$vmconv" digest sample.raw | cut -d' ' -f1)
echo "== sample digest $want"

check() { # check FILE...: every digest must equal the sample's
	for f in "$@"; do
		got=$("$vmconv" digest "$f" | cut -d' ' -f1)
		if [ "$got" != "$want" ]; then
			echo "DIGEST MISMATCH: $f $got" >&2
			exit 1
		fi
		printf '  %-40s %s\n' "$f" "$got"
	done
}

for sub in monolithicSparse streamOptimized monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat; do
	echo "== raw -> vmdk ($sub) -> raw"
	"$vmconv" convert --force -O vmdk -o subformat=$sub sample.raw "sample-$sub.vmdk"
	"$vmconv" info "sample-$sub.vmdk" | sed 's/^/  /'
	"$vmconv" check "sample-$sub.vmdk" | sed 's/^/  /'
	"$vmconv" convert --force "sample-$sub.vmdk" "back-$sub.raw"
	check "sample-$sub.vmdk" "back-$sub.raw"
	boots "sample-$sub.vmdk"
done

echo "== a whole VM: VMware -> Xen -> bundle -> VMware"
mkdir -p vm
"$vmconv" convert --force -O vmdk -o subformat=monolithicSparse,adapter_type=lsilogic sample.raw vm/demo.vmdk
cat >vm/demo.vmx <<'VMX'
.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "14"
displayName = "demo"
guestOS = "debian12-64"
numvcpus = "2"
memsize = "1024"
scsi0.present = "TRUE"
scsi0.virtualDev = "lsilogic"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "demo.vmdk"
ethernet0.present = "TRUE"
ethernet0.virtualDev = "e1000"
ethernet0.addressType = "static"
ethernet0.address = "00:50:56:12:34:56"
VMX
"$vmconv" info vm/demo.vmx | sed 's/^/  /'
"$vmconv" convert --force vm/demo.vmx demo.xva
"$vmconv" convert --force demo.xva demo.vmb
rm -rf back-vm
"$vmconv" convert demo.vmb back-vm/demo.vmx
echo "  bundle's vm.json:"
sed 's/^/    /' demo.vmb/vm.json | head -40
for v in vm/demo.vmx demo.xva demo.vmb back-vm/demo.vmx; do
	got=$("$vmconv" digest "$v" | cut -d' ' -f1)
	[ "$got" = "$want" ] || { echo "DIGEST MISMATCH: $v $got" >&2; exit 1; }
	printf '  %-40s %s\n' "$v" "$got"
	boots "$v"
done
"$vmconv" info back-vm/demo.vmx | grep -E 'cpus|memory|nic' | sed 's/^/  /'
echo "== every copy has the sample's digest"

# With the real Debian guest built (testdata/guest/build.sh, as the tests
# use it) and QEMU installed: convert it to Xen's format and prove it boots.
guest=${XDG_CACHE_HOME:-$HOME/.cache}/vmconv/guest/$(sha256sum "$repo/testdata/guest/build.sh" | cut -c1-16)
if [ -f "$guest/guest.vmx" ] && command -v qemu-system-x86_64 >/dev/null; then
	echo "== the real Debian guest: VMware -> Xen, then boot it to its login prompt"
	"$vmconv" convert --force "$guest/guest.vmx" guest.xva
	"$vmconv" info guest.xva | grep -E '^(name|cpus|memory|disk|nic|boots|cmdline)' | sed 's/^/  /'
	"$vmconv" verify guest.xva | sed 's/^/  /'
else
	echo "== (build the real Debian guest with testdata/guest/build.sh to see it converted and booted here)"
fi
