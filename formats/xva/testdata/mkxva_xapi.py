#!/usr/bin/python3
"""Writes an XVA in xapi's own layout (xe vm-export on XenServer <= 8.0):
ova.xml as xapi renders its records (xapi-style Ref:N ids, so VDI string
order differs from numeric and from userdevice order), .checksum files
holding the SHA-1 of each chunk in lowercase hex, all-zero chunks left out
except the first and last, the last chunk short when the disk size is not a
MiB multiple, and optionally 0-byte keep-alive chunks as xapi sends while it
skips long runs of zeros. Written with tarfile and hashlib only.

Usage: mkxva_xapi.py DESC.json OUT.xva
DESC: {"name": str, "uuid": str, "cpus": int, "cores_per_socket": int,
       "memory": bytes, "firmware": "bios"|"uefi", "pv_args": str,
       "disks": [{"path", "ref", "vbd", "userdevice", "name", "bootable",
                  "mode", "keepalive": [chunk numbers after which to send one]}],
       "cd": {"vbd", "userdevice"} or null,
       "nics": [{"ref", "device", "mac"}], "network": {"ref", "name"},
       "format": "gnu"|"pax"|"ustar"}
"""
import hashlib
import io
import json
import sys
import tarfile
from xml.sax.saxutils import escape

CHUNK = 1 << 20


def v(x, ind):
    pad = "\n" + "  " * ind
    if isinstance(x, bool):
        return "<value><boolean>%d</boolean></value>" % x
    if isinstance(x, tuple):  # (tag, text): a typed scalar
        return "<value><%s>%s</%s></value>" % (x[0], escape(x[1]), x[0])
    if isinstance(x, dict):
        inner = "".join(
            "%s  <member><name>%s</name>%s</member>" % (pad, escape(k), v(val, ind + 2)) for k, val in x.items()
        )
        return "<value><struct>%s%s</struct></value>" % (inner, pad)
    if isinstance(x, list):
        inner = "".join(pad + "  " + v(i, ind + 1) for i in x)
        return "<value><array><data>%s%s</data></array></value>" % (inner, pad)
    return "<value>%s</value>" % escape(str(x))


def main(desc_path, out_path):
    d = json.load(open(desc_path))
    vm_ref, sr_ref, host_ref = "Ref:5", "Ref:2", "Ref:1"
    net = d.get("network") or {"ref": "Ref:3", "name": "Pool-wide network associated with eth0"}
    objects = []
    vbds, vifs = [], []
    sizes = {}
    for disk in d["disks"]:
        import os

        sizes[disk["ref"]] = os.path.getsize(disk["path"])
    vm = {
        "uuid": d["uuid"],
        "allowed_operations": [],
        "current_operations": {},
        "power_state": "Halted",
        "name_label": d["name"],
        "name_description": "exported by xe vm-export",
        "user_version": "1",
        "is_a_template": False,
        "is_default_template": False,
        "suspend_VDI": "OpaqueRef:NULL",
        "resident_on": "OpaqueRef:NULL",
        "affinity": host_ref,
        "memory_overhead": "20971520",
        "memory_target": str(d["memory"]),
        "memory_static_max": str(d["memory"]),
        "memory_dynamic_max": str(d["memory"]),
        "memory_dynamic_min": str(d["memory"] // 2),
        "memory_static_min": str(d["memory"] // 4),
        "VCPUs_params": {"weight": "256"},
        "VCPUs_max": str(d["cpus"]),
        "VCPUs_at_startup": str(d["cpus"]),
        "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart",
        "actions_after_crash": "restart",
        "consoles": [],
        "VIFs": [n["ref"] for n in d["nics"]],
        "VBDs": [x["vbd"] for x in d["disks"]] + ([d["cd"]["vbd"]] if d.get("cd") else []),
        "crash_dumps": [],
        "VTPMs": [],
        "PV_bootloader": "",
        "PV_kernel": "",
        "PV_ramdisk": "",
        "PV_args": d.get("pv_args", ""),
        "PV_bootloader_args": "",
        "PV_legacy_args": "",
        "HVM_boot_policy": "BIOS order",
        "HVM_boot_params": {"order": "cd", "firmware": d["firmware"]},
        "HVM_shadow_multiplier": ("double", "1.000000"),
        "platform": {
            "timeoffset": "0",
            "device-model": "qemu-upstream-compat",
            "viridian": "false",
            "nx": "true",
            "acpi": "1",
            "apic": "true",
            "pae": "true",
            "cores-per-socket": str(d["cores_per_socket"]),
        },
        "PCI_bus": "",
        "other_config": {
            "base_template_name": "Debian Bullseye 11",
            "mac_seed": "1c4d2f16-5f0a-4e7b-8c7e-0b5e1d2c3a4f",
            "install-methods": "cdrom,nfs,http,ftp",
            "linux_template": "true",
        },
        "domid": "-1",
        "domarch": "",
        "last_boot_CPU_flags": {},
        "is_control_domain": False,
        "metrics": "OpaqueRef:NULL",
        "guest_metrics": "OpaqueRef:NULL",
        "last_booted_record": "",
        "recommendations": '<restrictions><restriction field="memory-static-max" max="1649267441664"/><restriction property="number-of-vbds" max="255"/></restrictions>',
        "xenstore_data": {"vm-data": ""},
        "ha_always_run": False,
        "ha_restart_priority": "",
        "is_a_snapshot": False,
        "snapshot_of": "OpaqueRef:NULL",
        "snapshots": [],
        "snapshot_time": ("dateTime.iso8601", "19700101T00:00:00Z"),
        "transportable_snapshot_id": "",
        "blobs": {},
        "tags": ["web", "prod & test"],
        "blocked_operations": {},
        "snapshot_info": {},
        "snapshot_metadata": "",
        "parent": "OpaqueRef:NULL",
        "children": [],
        "bios_strings": {"bios-vendor": "Xen", "system-manufacturer": "Xen"},
        "protection_policy": "OpaqueRef:NULL",
        "is_snapshot_from_vmpp": False,
        "appliance": "OpaqueRef:NULL",
        "start_delay": "0",
        "shutdown_delay": "0",
        "order": "0",
        "VGPUs": [],
        "attached_PCIs": [],
        "suspend_SR": "OpaqueRef:NULL",
        "version": "0",
        "generation_id": "0:0",
        "hardware_platform_version": "0",
        "has_vendor_device": False,
        "requires_reboot": False,
        "reference_label": "debian-11",
        "domain_type": "hvm",
        "NVRAM": {},
    }
    objects.append({"class": "host", "id": host_ref, "snapshot": {"uuid": "0f5e6a3b-8c7d-4e2f-9a1b-2c3d4e5f6a7b", "name_label": "xs71", "hostname": "xs71"}})
    objects.append({"class": "VM", "id": vm_ref, "snapshot": vm})
    for disk in d["disks"]:
        vbds.append({"class": "VBD", "id": disk["vbd"], "snapshot": {
            "uuid": "b0000000-0000-4000-8000-%012d" % int(disk["vbd"].split(":")[1]),
            "allowed_operations": [], "current_operations": {},
            "VM": vm_ref, "VDI": disk["ref"], "device": "", "userdevice": str(disk["userdevice"]),
            "bootable": disk.get("bootable", False), "mode": disk.get("mode", "RW"), "type": "Disk",
            "unpluggable": False, "storage_lock": False, "empty": False, "other_config": {"owner": "true"},
            "currently_attached": False, "status_code": "0", "status_detail": "", "runtime_properties": {},
            "qos_algorithm_type": "", "qos_algorithm_params": {}, "qos_supported_algorithms": [],
            "metrics": "OpaqueRef:NULL"}})
        objects.append({"class": "VDI", "id": disk["ref"], "snapshot": {
            "uuid": "d0000000-0000-4000-8000-%012d" % int(disk["ref"].split(":")[1]),
            "name_label": disk["name"], "name_description": "", "allowed_operations": [], "current_operations": {},
            "SR": sr_ref, "VBDs": [disk["vbd"]], "crash_dumps": [], "virtual_size": str(sizes[disk["ref"]]),
            "physical_utilisation": str(sizes[disk["ref"]]), "type": "system", "sharable": False, "read_only": False,
            "other_config": {}, "storage_lock": False, "location": "d0000000", "managed": True, "missing": False,
            "parent": "OpaqueRef:NULL", "xenstore_data": {}, "sm_config": {"vdi_type": "vhd"}, "is_a_snapshot": False,
            "snapshot_of": "OpaqueRef:NULL", "snapshots": [], "snapshot_time": ("dateTime.iso8601", "19700101T00:00:00Z"),
            "tags": [], "allow_caching": False, "on_boot": "persist", "metadata_of_pool": "OpaqueRef:NULL",
            "metadata_latest": False, "is_tools_iso": False, "cbt_enabled": False}})
    if d.get("cd"):
        vbds.append({"class": "VBD", "id": d["cd"]["vbd"], "snapshot": {
            "uuid": "c0000000-0000-4000-8000-000000000001", "VM": vm_ref, "VDI": "OpaqueRef:NULL",
            "device": "xvdd", "userdevice": str(d["cd"]["userdevice"]), "bootable": False, "mode": "RO",
            "type": "CD", "unpluggable": True, "storage_lock": False, "empty": True, "other_config": {},
            "currently_attached": False, "status_code": "0", "status_detail": "", "runtime_properties": {},
            "qos_algorithm_type": "", "qos_algorithm_params": {}, "qos_supported_algorithms": [],
            "metrics": "OpaqueRef:NULL"}})
    objects.extend(vbds)
    for n in d["nics"]:
        vifs.append({"class": "VIF", "id": n["ref"], "snapshot": {
            "uuid": "e0000000-0000-4000-8000-%012d" % int(n["ref"].split(":")[1]),
            "device": str(n["device"]), "network": net["ref"], "VM": vm_ref, "MAC": n["mac"], "MTU": "1500",
            "currently_attached": False, "status_code": "0", "status_detail": "", "runtime_properties": {},
            "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}, "qos_supported_algorithms": [],
            "metrics": "OpaqueRef:NULL", "MAC_autogenerated": n.get("auto", False), "locking_mode": "network_default",
            "ipv4_allowed": [], "ipv6_allowed": []}})
    objects.extend(vifs)
    objects.append({"class": "network", "id": net["ref"], "snapshot": {
        "uuid": "f0000000-0000-4000-8000-000000000003", "name_label": net["name"], "name_description": "",
        "VIFs": [n["ref"] for n in d["nics"]], "PIFs": [], "MTU": "1500", "other_config": {}, "bridge": "xenbr0",
        "blobs": {}, "tags": [], "default_locking_mode": "unlocked"}})
    objects.append({"class": "SR", "id": sr_ref, "snapshot": {
        "uuid": "a0000000-0000-4000-8000-000000000002", "name_label": "Local storage", "name_description": "",
        "VDIs": [x["ref"] for x in d["disks"]], "PBDs": [], "virtual_allocation": "0", "physical_utilisation": "0",
        "physical_size": "0", "type": "lvm", "content_type": "user", "shared": False, "other_config": {}, "tags": [],
        "sm_config": {}, "blobs": {}, "local_cache_enabled": False, "introduced_by": "OpaqueRef:NULL"}})
    doc = {
        "version": {"hostname": "xs71", "date": "2017-02-14", "product_version": "7.1.0", "product_brand": "XenServer",
                    "build_number": "137272c", "xapi_major": ("i4", "1"), "xapi_minor": ("i4", "9"), "export_vsn": "2"},
        "objects": objects,
    }
    xml = '<?xml version="1.0"?>\n' + v(doc, 0) + "\n"
    fmt = {"gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT, "ustar": tarfile.USTAR_FORMAT}[d.get("format", "gnu")]
    with tarfile.open(out_path, "w", format=fmt) as tf:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))

        add("ova.xml", xml.encode())
        for disk in sorted(d["disks"], key=lambda x: x["ref"]):
            size = sizes[disk["ref"]]
            last = (size - 1) // CHUNK
            n = 0  # chunk name counter, runs ahead of offsets after keep-alives
            with open(disk["path"], "rb") as f:
                for i in range(last + 1):
                    data = f.read(CHUNK)
                    if i == 0 or i == last or data.count(0) != len(data):
                        name = "%s/%08d" % (disk["ref"], n)
                        add(name, data)
                        add(name + ".checksum", hashlib.sha1(data).hexdigest().encode())
                        n += 1
                        if i in disk.get("keepalive", []):
                            name = "%s/%08d" % (disk["ref"], n)
                            add(name, b"")
                            add(name + ".checksum", hashlib.sha1(b"").hexdigest().encode())
                            n += 1
                    else:
                        n += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
