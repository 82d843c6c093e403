/**
 * Vite plugin: uPlot makes its `Intl` formatters when they are first used, not while its module
 * is evaluated.
 *
 * uPlot 1.6's module makes an `Intl.NumberFormat` (its default value formatter) and an
 * `Intl.DateTimeFormat` (only to learn the local time zone, for the `tzDate` helper) at the top
 * level. In a fresh renderer the first `Intl` object initialises ICU's locale and calendar data:
 * 13–26 ms of main thread on the bench machine (measured in Debian's Chromium, a new browser
 * context each time), on the path of every first chart, while the charts use neither (values
 * are formatted by lib/format.ts, time axes by uPlot's own `fmtDate`, which needs no `Intl`).
 * The transform turns both into getters that make the object on first use.
 *
 * The source is matched exactly; a uPlot whose text differs fails the build with the line to
 * look at, so an upgrade cannot silently bring the eager formatters back.
 */
import type { Plugin } from 'vite'

/** Each replacement: the exact text of uPlot's ESM build, and what it becomes. */
const PATCHES: [string, string][] = [
  [
    "const numFormatter = new Intl.NumberFormat(domEnv ? nav.language : 'en-US');\n" +
      'const fmtNum = val => numFormatter.format(val);',
    'let numFormatter = null;\n' +
      "const fmtNum = val => (numFormatter ??= new Intl.NumberFormat(domEnv ? nav.language : 'en-US')).format(val);",
  ],
  [
    'const localTz = new Intl.DateTimeFormat().resolvedOptions().timeZone;',
    'let localTzName = null;\nconst localTz = () => (localTzName ??= new Intl.DateTimeFormat().resolvedOptions().timeZone);',
  ],
  ['else if (tz == localTz)', 'else if (tz == localTz())'],
]

/** uPlot's ESM source with the formatters made lazily; throws when a pattern is not found once. */
export function lazyIntl(source: string): string {
  let out = source
  for (const [from, to] of PATCHES) {
    const count = out.split(from).length - 1
    if (count !== 1) {
      throw new Error(
        `uplotLazyIntl: expected uPlot's source to hold once:\n  ${from.replace(/\n/g, '\n  ')}\n` +
          `found it ${count} times; update dashboard/scripts/uplotLazyIntl.ts for this uPlot version`,
      )
    }
    out = out.replace(from, to)
  }
  return out
}

export function uplotLazyIntl(): Plugin {
  return {
    name: 'microdash:uplot-lazy-intl',
    enforce: 'pre',
    transform(code, id) {
      if (!/[\\/]uplot[\\/]dist[\\/]uPlot\.esm\.js$/.test(id.split('?')[0]!)) return null
      return { code: lazyIntl(code), map: null }
    },
  }
}
