// Writes an XVA with Xen Orchestra's own writer (@xen-orchestra/xva), the
// code XO runs to import VMware VMs into XCP-ng, from raw disk files.
//
//   node write-xva.mjs DESC.json OUT.xva
//
// DESC.json: {"vm": {name_label, memory, nCpus, firmware, ...VM fields},
//             "disks": [{"path": RAW, "name_label": ...}],
//             "sr": {...}, "network": {...}, "networks": [{macAddress, isGenerated}]}
import fs from 'node:fs'
import { pipeline } from 'node:stream/promises'
import tar from 'tar-stream'

import writeOvaXml from '@xen-orchestra/xva/_writeOvaXml.mjs'
import writeDisk from '@xen-orchestra/xva/_writeDisk.mjs'

const [descPath, outPath] = process.argv.slice(2)
const desc = JSON.parse(fs.readFileSync(descPath, 'utf8'))

const vhds = desc.disks.map(d => ({
  footer: { currentSize: fs.statSync(d.path).size },
  rawContent: async () => fs.createReadStream(d.path, { highWaterMark: 1024 * 1024 }),
}))
const vdis = desc.disks.map(d => ({ name_label: d.name_label, virtual_size: fs.statSync(d.path).size }))

const pack = tar.pack()
const done = pipeline(pack, fs.createWriteStream(outPath))
await writeOvaXml(pack, { ...desc.vm, vdis, vhds, networks: desc.networks ?? [] }, { sr: desc.sr ?? { name_label: 'SR' }, network: desc.network })
for (const vhd of vhds) {
  await writeDisk(pack, vhd, vhd.ref)
}
pack.finalize()
await done
