#!/usr/bin/env bash
# Batch benchmark: a fleet cloned from one template, converted to bundles
# sharing one chunk store. Prints the store's growth against the template's,
# the batch's throughput (-j 2) against the same conversions run one after
# another with `vmconv convert`, and the batch's peak RSS for 8 and 32 VMs.
# Usage: bench/batch.sh [WORKDIR]   (env: VMS=8, BIG=32, ROUNDS=3, VMCONV=bin/vmconv)
set -euo pipefail
cd "$(dirname "$0")/.."
vms=${VMS:-8}
big=${BIG:-32}
vmconv=$(realpath -m "${VMCONV:-bin/vmconv}")
[ -x "$vmconv" ] || go build -o "$vmconv" ./cmd/vmconv
work=${1:-${TMPDIR:-/tmp}/vmconv-bench-batch}
mkdir -p "$work"
cd "$work"

vmx() { # vmx NAME: a VMware VM with one disk NAME.vmdk
	cat <<VMX
.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "14"
displayName = "$1"
numvcpus = "1"
memsize = "512"
guestOS = "debian11-64"
scsi0.present = "TRUE"
scsi0.virtualDev = "lsilogic"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "$1.vmdk"
VMX
}

if [ ! -s base.raw ]; then
	echo "== template: 256 MiB ext4 from /usr/share"
	rm -rf stage; mkdir stage
	for d in /usr/share/*; do # fill to about 160 MiB: room for the file system's own
		[ "$(du -sm stage | cut -f1)" -ge 160 ] && break
		cp -a "$d" stage/ 2>/dev/null || true
	done
	mkfs.ext4 -q -F -d stage base.raw 256M
	rm -rf stage
fi
if [ ! -s "vms/vm$vms/vm$vms.vmx" ]; then
	echo "== $vms clones, each with 3 MiB of its own"
	rm -rf base vms; mkdir -p base
	"$vmconv" convert base.raw base/base.vmdk; vmx base > base/base.vmx
	for i in $(seq "$vms"); do
		mkdir -p "vms/vm$i"
		cp --sparse=always base.raw clone.raw
		dd if=/dev/urandom of=clone.raw bs=1M count=3 seek=$((16 + i * 8)) conv=notrunc status=none
		"$vmconv" convert clone.raw "vms/vm$i/vm$i.vmdk"
		vmx "vm$i" > "vms/vm$i/vm$i.vmx"
	done
	rm -f clone.raw
fi
kib() { du -sk "$1" | cut -f1; }
echo "== host: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "template: $(du -h --apparent-size base.raw | cut -f1) virtual, $(du -h base.raw | cut -f1) allocated"

# Store growth: the template's own bundle, then the fleet into the same store.
rm -rf store out; mkdir out; "$vmconv" convert --store store base/base.vmx out/base.vmb
s0=$(kib store)
"$vmconv" batch --from 'vms/*/*.vmx' --to vmb --out out --store store -j 2 2>/dev/null
s1=$(kib store)
awk -v s0="$s0" -v s1="$s1" -v n="$vms" 'BEGIN {
	printf "store: template %.1f MiB; %d clones add %.1f MiB: growth %.3f of the template (%.1f%% per clone; without the store %.1fx)\n",
		s0/1024, n, (s1-s0)/1024, (s1-s0)/s0, 100*(s1-s0)/s0/n, n*s0/s1 }'

# Throughput: the batch against the same conversions one after another,
# alternating, ROUNDS times; medians with min-max, and CPU seconds (user +
# sys), which a host shared with other work disturbs less than wall time.
timed() { /usr/bin/time -f '%e %U %S' -o time.out "$@" >/dev/null 2>&1; awk '{print $1, $2 + $3}' time.out; }
stats() { sort -n | awk '{a[NR]=$1} END {printf "%.2f s (%.2f-%.2f)", a[int((NR+1)/2)], a[1], a[NR]}'; }
: > tb.txt; : > ts.txt
for _ in $(seq "${ROUNDS:-3}"); do
	rm -rf store out; timed "$vmconv" batch --from 'vms/*/*.vmx' --to vmb --out out --store store -j 2 >> tb.txt
	rm -rf store out; mkdir out
	timed bash -c "for v in vms/*/*.vmx; do n=\$(basename \$v .vmx); '$vmconv' convert --store store \$v out/\$n.vmb || exit 1; done" >> ts.txt
done
mb=$(cut -d' ' -f1 tb.txt | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
ms=$(cut -d' ' -f1 ts.txt | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "throughput: batch -j 2 $(cut -d' ' -f1 tb.txt | stats), CPU $(cut -d' ' -f2 tb.txt | stats)"
echo "            one convert after another $(cut -d' ' -f1 ts.txt | stats), CPU $(cut -d' ' -f2 ts.txt | stats)"
awk -v tb="$mb" -v ts="$ms" -v n="$vms" 'BEGIN { printf "            batch: %.1f VMs/s, %.0f MiB/s of virtual disk; %.2fx the one-after-another rate\n", n/tb, n*256/tb, ts/tb }'

# Peak RSS for the fleet and for a fleet four times larger (the clones again
# under other names): bounded, it does not grow with the fleet.
rss() { # rss N: peak RSS in MiB of a batch of N VMs
	{ echo "defaults: {to: vmb, out: out, store: store}"; echo "vms:"
	  for k in $(seq "$1"); do i=$(( (k - 1) % vms + 1 )); echo "  - {source: vms/vm$i/vm$i.vmx, name: vm$k}"; done; } > plan.yaml
	rm -rf store out
	/usr/bin/time -v -o rss.out "$vmconv" batch plan.yaml -j 2 >/dev/null 2>&1
	awk '/Maximum resident/ {printf "%.0f", $NF/1024}' rss.out
}
r8=$(rss "$vms"); r32=$(rss "$big")
echo "peak RSS: $vms VMs $r8 MiB, $big VMs $r32 MiB (-j 2)"
