#!/usr/bin/env python3
"""An independent check of an OVA (or an OVF directory) with the standard
library only: xml.etree, tarfile, hashlib.

usage: checkova.py PACKAGE.ova | PACKAGE.ovf [EXTRACT_DIR]

Checks: the first tar member is the .ovf; the manifest lists every file
with a digest that matches; each References/File ovf:size is the file's
size; every Disk has a fileRef in References (or none: a blank disk),
ovf:populatedSize <= capacity, a streamOptimized format; the descriptor
names a VirtualSystem with CPU and memory items. Prints one JSON line with
what it found; exits 1 with a message on the first failure. With
EXTRACT_DIR, an OVA's members are extracted there for qemu-img.
"""
import hashlib
import json
import os
import re
import sys
import tarfile
import xml.etree.ElementTree as ET

OVF = "{http://schemas.dmtf.org/ovf/envelope/1}"
RASD = "{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData}"
VMW = "{http://www.vmware.com/schema/ovf}"


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def members_of(path, extract):
    """name -> bytes-reader factory and size, plus the first member name."""
    files, first = {}, None
    if path.endswith(".ovf"):
        d = os.path.dirname(path) or "."
        first = os.path.basename(path)
        for n in os.listdir(d):
            p = os.path.join(d, n)
            if os.path.isfile(p):
                files[n] = (lambda p=p: open(p, "rb"), os.path.getsize(p))
        return files, first
    t = tarfile.open(path, "r:")
    for i, m in enumerate(t.getmembers()):
        if not m.isreg():
            fail("member %s is not a regular file" % m.name)
        if i == 0:
            first = m.name
        files[m.name] = (lambda m=m: t.extractfile(m), m.size)
        if extract:
            with t.extractfile(m) as src, open(os.path.join(extract, m.name), "wb") as dst:
                for b in iter(lambda: src.read(1 << 20), b""):
                    dst.write(b)
    return files, first


def digest(opener, algo):
    h = hashlib.new(algo)
    with opener() as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def main():
    path = sys.argv[1]
    extract = sys.argv[2] if len(sys.argv) > 2 else None
    files, first = members_of(path, extract)
    if not first or not first.endswith(".ovf"):
        fail("first member is %r, not the .ovf" % first)
    with files[first][0]() as f:
        root = ET.parse(f).getroot()
    if root.tag != OVF + "Envelope":
        fail("root element is %s" % root.tag)
    mfname = first[:-4] + ".mf"
    if mfname not in files:
        fail("no manifest %s" % mfname)
    with files[mfname][0]() as f:
        mf = f.read().decode()
    listed = {}
    for line in mf.splitlines():
        m = re.match(r"^(SHA1|SHA256|SHA512)\s?\((.+)\)\s?=\s?([0-9a-fA-F]+)$", line.strip())
        if not m:
            fail("manifest line %r" % line)
        listed[m.group(2)] = (m.group(1).lower(), m.group(3).lower())
    for name in files:
        if name == mfname or name.endswith(".cert"):
            continue
        if name not in listed:
            if path.endswith(".ovf"):
                continue  # other files in the directory
            fail("%s is not in the manifest" % name)
        algo, want = listed[name]
        got = digest(files[name][0], algo)
        if got != want:
            fail("%s: %s %s, manifest says %s" % (name, algo, got, want))
    refs = {}
    for fe in root.iter(OVF + "File"):
        href, size = fe.get(OVF + "href"), fe.get(OVF + "size")
        if href not in files:
            fail("References names %s, not in the package" % href)
        if size is None or int(size) != files[href][1]:
            fail("%s: ovf:size %s, file has %d bytes" % (href, size, files[href][1]))
        refs[fe.get(OVF + "id")] = href
    disks = []
    for d in root.iter(OVF + "Disk"):
        cap = int(d.get(OVF + "capacity"))
        pop = d.get(OVF + "populatedSize")
        if pop is not None and int(pop) > cap:
            fail("disk %s: populatedSize %s > capacity %d" % (d.get(OVF + "diskId"), pop, cap))
        if not d.get(OVF + "format", "").endswith("#streamOptimized"):
            fail("disk %s: format %s" % (d.get(OVF + "diskId"), d.get(OVF + "format")))
        ref = d.get(OVF + "fileRef")
        if ref and ref not in refs:
            fail("disk %s: fileRef %s not in References" % (d.get(OVF + "diskId"), ref))
        disks.append({"id": d.get(OVF + "diskId"), "capacity": cap, "file": refs.get(ref), "populated": int(pop or 0)})
    vs = root.find(OVF + "VirtualSystem")
    if vs is None:
        fail("no VirtualSystem")
    hw = vs.find(OVF + "VirtualHardwareSection")
    items = {}
    for it in hw.findall(OVF + "Item"):
        rt = it.findtext(RASD + "ResourceType")
        items.setdefault(rt, []).append(it)
    if "3" not in items or "4" not in items:
        fail("no CPU or memory item")
    fw = [c.get(VMW + "value") for c in hw.findall(VMW + "Config") if c.get(VMW + "key") == "firmware"]
    out = {
        "first": first,
        "cpus": int(items["3"][0].findtext(RASD + "VirtualQuantity")),
        "memory": int(items["4"][0].findtext(RASD + "VirtualQuantity")),
        "firmware": fw[0] if fw else None,
        "disks": disks,
        "macs": [it.findtext(RASD + "Address") for it in items.get("10", [])],
        "cdroms": [it.findtext(RASD + "HostResource") for it in items.get("15", [])],
        "manifest": sorted(listed),
    }
    print(json.dumps(out))


main()
