#!/usr/bin/env python3
"""Build an OVA the way other tools do, with Python's tarfile: the members
in the order given, and a manifest in the "SHA256 (file) = hex" spelling
(coreutils sha256sum --tag, VirtualBox) placed where the arguments say.

usage: mkova.py OUT.ova MEMBER... [--mf=NAME.mf] [--mf-at=first|second|last]
A member is a path; its name in the archive is its base name.
"""
import hashlib
import os
import sys
import tarfile


def main(argv):
    out = argv[1]
    members, mf, where = [], None, "second"
    for a in argv[2:]:
        if a.startswith("--mf="):
            mf = a[5:]
        elif a.startswith("--mf-at="):
            where = a[8:]
        else:
            members.append(a)
    lines = []
    for m in members:
        h = hashlib.sha256()
        with open(m, "rb") as f:
            for b in iter(lambda: f.read(1 << 20), b""):
                h.update(b)
        lines.append("SHA256 (%s) = %s\n" % (os.path.basename(m), h.hexdigest()))
    order = list(members)
    mfpath = None
    if mf:
        mfpath = os.path.join(os.path.dirname(out) or ".", mf)
        with open(mfpath, "w") as f:
            f.writelines(lines)
        pos = {"first": 0, "second": 1, "last": len(order)}[where]
        order.insert(pos, mfpath)
    with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as t:
        for m in order:
            t.add(m, arcname=os.path.basename(m))


if __name__ == "__main__":
    main(sys.argv)
