// After `vite build`: a Brotli (.br) and a gzip (.gz) copy of every text file in dist/ that
// shrinks by at least a tenth, made once at build time at the best levels, so the server sends
// them by Accept-Encoding without compressing anything per request (apiserver/src/http/assets.rs).
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { brotliCompressSync, constants, gzipSync } from 'node:zlib'

const dist = new URL('../dist/', import.meta.url).pathname
const TEXT = /\.(js|css|html|svg|json|map|txt)$/

function* files(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) yield* files(path)
    else if (TEXT.test(name)) yield path
  }
}

let raw = 0
let br = 0
let gz = 0
for (const path of files(dist)) {
  const bytes = readFileSync(path)
  const brotli = brotliCompressSync(bytes, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
      [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
      [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
    },
  })
  const gzip = gzipSync(bytes, { level: 9 })
  raw += bytes.length
  if (brotli.length <= bytes.length * 0.9) {
    writeFileSync(`${path}.br`, brotli)
    br += brotli.length
  } else br += bytes.length
  if (gzip.length <= bytes.length * 0.9) {
    writeFileSync(`${path}.gz`, gzip)
    gz += gzip.length
  } else gz += bytes.length
}
const kb = (n) => `${(n / 1024).toFixed(1)} KiB`
console.log(`precompressed dist/: ${kb(raw)} → brotli ${kb(br)}, gzip ${kb(gz)}`)
