package vmdk

import (
	"fmt"
	"io"
	"strings"
)

// OpenReaderAt opens a single-file sparse VMDK (monolithicSparse or
// streamOptimized, the disks of an OVA) held in r, size bytes long, such as
// an archive member. name is used in errors. The image does not close r.
// A delta disk (one with a parent) is refused: its parent is not at hand.
func OpenReaderAt(name string, r io.ReaderAt, size int64) (*Image, error) {
	var head [4]byte
	if n, _ := r.ReadAt(head[:], 0); n < 4 || string(head[:]) != "KDMV" {
		return nil, fmt.Errorf("vmdk %s: not a sparse extent (no KDMV magic); only single-file sparse VMDKs can be read from an archive", name)
	}
	img := &Image{path: name}
	sp, err := openSparse(name, r, size)
	if err != nil {
		return nil, err
	}
	if err := img.fromSparse(sp, r); err != nil {
		return nil, err
	}
	if img.desc.ParentCID != noParentCID || img.desc.ParentFileNameHint != "" {
		return nil, fmt.Errorf("vmdk %s: a delta disk (parentCID=%08x): its parent is not in the archive", name, img.desc.ParentCID)
	}
	for _, kv := range img.desc.DDB {
		if k := strings.ToLower(kv.Key); strings.HasPrefix(k, "ddb.encryption") || k == "ddb.keysafe" {
			return nil, fmt.Errorf("vmdk %s: the disk is encrypted (%s): encrypted VMDKs are not supported", name, kv.Key)
		}
	}
	img.fillInfo()
	return img, nil
}
