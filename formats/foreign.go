package formats

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// A file whose format vmconv does not read must not fall through to raw:
// its metadata would be copied as if it were the guest's disk, and the
// conversion would succeed with a disk no guest can use. These are the
// image formats qemu-img probes that vmconv has no reader for, by the magic
// qemu's drivers look for.
var foreignFormats = []struct {
	name  string // as qemu-img names it
	what  string
	match func(head, tail []byte) bool
}{
	{"qcow", "a qcow (version 1) image", func(h, _ []byte) bool {
		return len(h) >= 8 && string(h[:4]) == "QFI\xfb" && binary.BigEndian.Uint32(h[4:]) == 1
	}},
	{"qed", "a QED image", func(h, _ []byte) bool { return bytes.HasPrefix(h, []byte("QED\x00")) }},
	{"parallels", "a Parallels image", func(h, _ []byte) bool {
		return bytes.HasPrefix(h, []byte("WithoutFreeSpace")) || bytes.HasPrefix(h, []byte("WithouFreSpacExt"))
	}},
	{"luks", "a LUKS-encrypted image", func(h, _ []byte) bool { return bytes.HasPrefix(h, []byte("LUKS\xba\xbe")) }},
	{"bochs", "a Bochs image", func(h, _ []byte) bool { return bytes.HasPrefix(h, []byte("Bochs Virtual HD Image")) }},
	{"cloop", "a cloop image", func(h, _ []byte) bool {
		return bytes.HasPrefix(h, []byte("#!/bin/sh\n#V2.0 Format\nmodprobe cloop"))
	}},
	// A DMG's trailer ("koly") is the last 512 bytes.
	{"dmg", "an Apple disk image (DMG)", func(_, t []byte) bool { return len(t) == tailSize && bytes.HasPrefix(t, []byte("koly")) }},
}

// refuseForeign returns an error naming the format when head (and tail, the
// last tailSize bytes, when known) are those of an image format vmconv does
// not read.
func refuseForeign(path string, head, tail []byte) error {
	for _, f := range foreignFormats {
		if f.match(head, tail) {
			return fmt.Errorf("%s: %s (qemu-img format %q), which vmconv does not read: convert it to raw or qcow2 with qemu-img first, or give -f raw to copy its bytes as they are",
				path, f.what, f.name)
		}
	}
	return nil
}
