#!/usr/bin/python3
"""Independent XVA checker: walks the tar (plain, gzip or zstd via the zstd
tool), verifies every .checksum (SHA-1) and .xxhash (XXH64) file exactly as
xapi's importer compares them, checks the stream rules (ova.xml first, VDIs
in id string order, chunk names increasing, a checksum after each chunk,
first and last chunk present), rebuilds each disk by xapi's offset rule and
prints one JSON object: {vdi ref: {"sha256", "size", "chunks"}}.

Usage: checkxva.py FILE.xva   (exit 1 with a message on any failure)
"""
import hashlib
import json
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET

import xxhash

CHUNK = 1 << 20


def fail(msg):
    print("checkxva: " + msg, file=sys.stderr)
    sys.exit(1)


def value(v):
    """Decode an XML-RPC <value> element into Python values."""
    kids = list(v)
    if not kids:
        return v.text or ""
    k = kids[0]
    if k.tag == "struct":
        return {m.find("name").text or "": value(m.find("value")) for m in k.findall("member")}
    if k.tag == "array":
        return [value(x) for x in k.find("data").findall("value")]
    if k.tag == "boolean":
        return k.text == "1"
    return k.text or ""


def open_tar(path):
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"\x28\xb5\x2f\xfd":
        p = subprocess.Popen(["zstd", "-dc", path], stdout=subprocess.PIPE)
        return tarfile.open(fileobj=p.stdout, mode="r|")
    return tarfile.open(path, mode="r|*")


def main(path):
    tf = open_tar(path)
    first = tf.next()
    if first is None or first.name != "ova.xml":
        fail("first entry is %r, want ova.xml" % (first and first.name))
    doc = value(ET.fromstring(tf.extractfile(first).read()))
    if str(doc["version"]["export_vsn"]) != "2":
        fail("export_vsn %r" % doc["version"]["export_vsn"])
    objs = {o["id"]: o for o in doc["objects"]}
    streamed = set()
    for o in doc["objects"]:
        if o["class"] == "VBD" and o["snapshot"].get("type") != "CD":
            ref = o["snapshot"]["VDI"]
            if ref not in objs or objs[ref]["class"] != "VDI":
                fail("VBD %s: VDI %s not in ova.xml" % (o["id"], ref))
            sr = objs.get(objs[ref]["snapshot"].get("SR"))
            if sr is None or sr["class"] != "SR":
                fail("VDI %s: SR %r not in ova.xml" % (ref, objs[ref]["snapshot"].get("SR")))
            streamed.add(ref)
    order = sorted(streamed)
    out = {}
    cur = None
    state = None
    pending = None

    def close_vdi():
        if state is None:
            return
        ref, h, pos, prev, unit, n, size, last_data = state
        if pending is not None:
            fail("%s: chunk without checksum" % ref)
        if pos < size:  # also catches a missing last chunk
            fail("%s: data ends at %d of %d" % (ref, pos, size))
        out[ref] = {"sha256": h.hexdigest(), "size": size, "chunks": n}

    for m in tf:
        if m is first:
            continue  # TarFile iteration starts over with members already read
        if m.isdir():
            continue
        if not m.isfile():
            fail("entry %s is not a regular file" % m.name)
        d, base = m.name.rsplit("/", 1)
        data = tf.extractfile(m).read()
        if "." in base:
            num, ext = base.split(".", 1)
            if pending is None or pending[0] != m.name[: -len(ext) - 1]:
                fail("checksum %s without its chunk" % m.name)
            text = data.decode()
            if ext == "checksum":
                want = hashlib.sha1(pending[1]).hexdigest()
            elif ext == "xxhash":
                want = "%016X" % xxhash.xxh64_intdigest(pending[1])
            else:
                fail("unknown checksum type " + m.name)
            if text != want:
                fail("%s: %r != %r" % (m.name, text, want))
            pending = None
            continue
        if pending is not None:
            fail("chunk %s: no checksum file" % pending[0])
        n = int(base)
        if cur != d:
            close_vdi()
            if d not in streamed:
                fail("directory %s is not a streamed VDI" % d)
            if cur is not None and d < cur:
                fail("VDI %s after %s: not in string order" % (d, cur))
            if n != 0:
                fail("%s: first chunk is %d, want 0" % (d, n))
            cur = d
            size = int(objs[d]["snapshot"]["virtual_size"])
            state = [d, hashlib.sha256(), 0, -1, len(data), 0, size, None]
        ref, h, pos, prev, unit, cnt, size, _ = state
        if n <= prev:
            fail("%s: chunk %d after %d" % (d, n, prev))
        start = pos + (n - prev - 1) * unit
        gap = start - pos
        zero = bytes(CHUNK)
        while gap > 0:
            k = min(gap, CHUNK)
            h.update(zero[:k])
            gap -= k
        keep = data[: max(0, size - start)]
        if len(data) and start >= size:
            fail("%s: chunk %d beyond size" % (d, n))
        h.update(keep)
        state = [ref, h, start + len(data), n, unit, cnt + 1, size, None]
        pending = (m.name, data)
    close_vdi()
    missing = [r for r in order if r not in out and int(objs[r]["snapshot"]["virtual_size"]) > 0]
    if missing:
        fail("VDIs without chunks: %s" % missing)
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
