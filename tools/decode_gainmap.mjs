// Independent Ultra HDR check: parse a gain-map JPEG with @monogrid/gainmap-js.
//
// Usage: node tools/decode_gainmap.mjs FILE.jpg
// Prints one JSON object: {"metadata": {...}, "sdr": base64 JPEG, "gainMap": base64 JPEG}.
// extractGainmapFromJPEG is pure JS (it reads the ISO 21496-1 / hdrgm XMP metadata and splits
// the two JPEG streams via the MPF index); decoding the JPEG pixels needs a browser, so the
// caller decodes the two returned JPEG byte strings itself.
import { readFileSync } from 'node:fs'
import { extractGainmapFromJPEG } from '@monogrid/gainmap-js'

const file = process.argv[2]
if (!file) {
  console.error('usage: node decode_gainmap.mjs FILE.jpg')
  process.exit(2)
}
// Copy into a fresh buffer: the MPF parser reads `.buffer` from offset 0, and Node's file
// buffers may be slices of a larger pool.
const bytes = new Uint8Array(readFileSync(file))
try {
  const { sdr, gainMap, metadata } = await extractGainmapFromJPEG(bytes)
  process.stdout.write(JSON.stringify({
    metadata,
    sdr: Buffer.from(sdr).toString('base64'),
    gainMap: Buffer.from(gainMap).toString('base64')
  }))
} catch (err) {
  console.error(`decode_gainmap: ${err && err.message ? err.message : err}`)
  process.exit(1)
}
