package vmdk

import (
	"errors"
	"iter"

	"github.com/vmconv/vmconv/disk"
)

// Measure says how large the VMDK files that Create at path and a copy
// write are, together, for a disk of size bytes whose data lies in the
// extents data yields (sorted): each sparse extent's header, descriptor
// area and grain tables and a grain for every grain the data touches; each
// flat extent whole; the descriptor file of the split subformats. A
// streamOptimized VMDK's grains are compressed: its size is known only once
// written, and it is refused.
func Measure(path string, size int64, data iter.Seq[disk.Extent], opt Options) (disk.Measurement, error) {
	opt.fill()
	if size <= 0 {
		return disk.Measurement{}, errors.New("vmdk: want a positive size")
	}
	sectors := (size + sectorSize - 1) / sectorSize
	if sectors > maxCapacitySectors {
		return disk.Measurement{}, errors.New("vmdk: size larger than VMDK's capacity")
	}
	switch opt.Subformat {
	case StreamOptimized:
		return disk.Measurement{}, errors.New("vmdk: a streamOptimized disk's grains are compressed: its size is known only once written")
	case MonolithicSparse:
		h, _, _ := sparseLayout(sectors, true, opt.ZeroedGrain)
		base := int64(h.OverHead) * sectorSize
		grains := disk.CountBlocks(data, writeGrainBytes)
		all := (sectors*sectorSize + writeGrainBytes - 1) / writeGrainBytes
		return disk.Measurement{Required: base + grains*writeGrainBytes, FullyAllocated: base + all*writeGrainBytes}, nil
	}
	lines, per := splitExtents(path, sectors, opt)
	desc := int64(len(newDescriptor(opt, sectors, lines).format()))
	m := disk.Measurement{Required: desc, FullyAllocated: desc}
	if lines[0].Type == "FLAT" {
		m.Required += sectors * sectorSize
		m.FullyAllocated += sectors * sectorSize
		return m, nil
	}
	// Each sparse extent: its own tables, and its grains.
	grains := make([]int64, len(lines))
	perGrains := per * sectorSize / writeGrainBytes
	for r := range disk.BlockRuns(data, writeGrainBytes) {
		for g, end := r.First, r.First+r.Count; g < end; {
			i := g / perGrains
			if i >= int64(len(lines)) {
				break
			}
			n := min(end, (i+1)*perGrains) - g
			grains[i] += n
			g += n
		}
	}
	for i, l := range lines {
		h, _, _ := sparseLayout(l.Sectors, false, opt.ZeroedGrain)
		base := int64(h.OverHead) * sectorSize
		all := (l.Sectors*sectorSize + writeGrainBytes - 1) / writeGrainBytes
		m.Required += base + grains[i]*writeGrainBytes
		m.FullyAllocated += base + all*writeGrainBytes
	}
	return m, nil
}
