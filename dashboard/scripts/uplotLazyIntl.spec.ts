// @vitest-environment node
// uPlot's module without a DOM (in jsdom it would read matchMedia, which jsdom lacks).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, afterEach, describe, expect, it, onTestFinished } from 'vitest'
import { lazyIntl } from './uplotLazyIntl'

const uplotPath = join(__dirname, '../node_modules/uplot/dist/uPlot.esm.js')
const source = readFileSync(uplotPath, 'utf8')
const dir = mkdtempSync(join(tmpdir(), 'uplot-lazy-intl-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const real = { NumberFormat: Intl.NumberFormat, DateTimeFormat: Intl.DateTimeFormat }
const made = { NumberFormat: 0, DateTimeFormat: 0 }
afterEach(() => {
  Intl.NumberFormat = real.NumberFormat
  Intl.DateTimeFormat = real.DateTimeFormat
})

/** Counts the formatters made from now on (`new` and plain calls alike). */
function countFormatters(): void {
  made.NumberFormat = 0
  made.DateTimeFormat = 0
  for (const name of ['NumberFormat', 'DateTimeFormat'] as const) {
    const count = () => void made[name]++
    const counted = new Proxy(real[name], {
      construct: (target, args) => (count(), Reflect.construct(target, args)),
      apply: (target, self, args) => (count(), Reflect.apply(target, self, args)),
    })
    ;(Intl as unknown as Record<string, unknown>)[name] = counted
  }
}

let loaded = 0
/** Evaluates `code` as a fresh module (its own file, so it is not a cached one). */
async function evaluate(code: string) {
  const file = join(dir, `uplot-${loaded++}.mjs`)
  writeFileSync(file, code)
  return (await import(/* @vite-ignore */ pathToFileURL(file).href)).default
}

describe('uPlot with its Intl formatters made on first use', () => {
  it('makes no formatter while the module is evaluated (the original makes two)', async () => {
    countFormatters()
    await evaluate(source)
    expect(made).toEqual({ NumberFormat: 1, DateTimeFormat: 1 })

    countFormatters()
    await evaluate(lazyIntl(source))
    expect(made).toEqual({ NumberFormat: 0, DateTimeFormat: 0 })
  })

  it('formats numbers and resolves the local time zone as before, each formatter made once', async () => {
    countFormatters()
    const uPlot = await evaluate(lazyIntl(source))
    const want = new real.NumberFormat('en-US')
    expect(uPlot.fmtNum(1234567.891)).toBe(want.format(1234567.891))
    expect(uPlot.fmtNum(-0.5)).toBe(want.format(-0.5))
    expect(made.NumberFormat).toBe(1)

    // The local zone leaves a date as it is; another zone moves it. (Not UTC, which uPlot
    // answers without asking for the local zone.)
    const tz = process.env.TZ
    process.env.TZ = 'Europe/Berlin'
    onTestFinished(() => void (tz === undefined ? delete process.env.TZ : (process.env.TZ = tz)))
    const date = new Date(Date.UTC(2026, 11, 5, 12, 0, 0))
    const local = new real.DateTimeFormat().resolvedOptions().timeZone
    expect(local).toBe('Europe/Berlin')
    expect(uPlot.tzDate(date, local)).toBe(date)
    expect(uPlot.tzDate(date, local)).toBe(date)
    expect(made.DateTimeFormat).toBe(1)
    const elsewhere = local === 'Asia/Tokyo' ? 'America/New_York' : 'Asia/Tokyo'
    expect(uPlot.tzDate(date, elsewhere)).not.toBe(date)
  })

  it('fails the build when uPlot’s source no longer holds a pattern', () => {
    const changed = source.replace('const localTz = new Intl.DateTimeFormat()', 'const localTz = Intl.DateTimeFormat()')
    expect(() => lazyIntl(changed)).toThrow(/found it 0 times; update dashboard\/scripts\/uplotLazyIntl\.ts/)
  })
})
