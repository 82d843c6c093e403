/**
 * The dashboard builder's pure logic: migration of dashboards saved before the builder,
 * variable substitution, the undo history, import validation and stat thresholds.
 */
import {
  AGGREGATIONS,
  WIDGET_TYPES,
  type Dashboard,
  type DashboardVariable,
  type GridPos,
  type Labels,
  type Panel,
  type Threshold,
  type WidgetType,
} from '@/api/types'
import { isRangeKey, pickStep, type TimeRange } from '@/lib/timeRange'

export const GRID_COLS = 12
/** Height of one grid row in px. */
export const ROW_HEIGHT = 40
/** Default size of a new panel, per type. */
export const DEFAULT_SIZE: Record<WidgetType, { w: number; h: number }> = {
  timeseries: { w: 6, h: 7 },
  stat: { w: 3, h: 4 },
  gauge: { w: 3, h: 5 },
  topn: { w: 4, h: 6 },
  alerts: { w: 6, h: 6 },
  text: { w: 4, h: 4 },
}
export const WIDGET_LABELS: Record<WidgetType, string> = {
  timeseries: 'Time series',
  stat: 'Stat',
  gauge: 'Gauge',
  topn: 'Top N',
  alerts: 'Alert list',
  text: 'Text',
}
/** The largest saved document the server takes (it answers 413 above). */
export const MAX_DOCUMENT_BYTES = 256 * 1024

function clampInt(v: unknown, min: number, max: number, fallback: number): number {
  const n = typeof v === 'number' && Number.isFinite(v) ? Math.round(v) : fallback
  return Math.max(min, Math.min(max, n))
}

/**
 * A dashboard as the builder edits it. Panels saved before the builder (no `type`, no
 * `layout`) become time series flowing in two columns, in their saved order, below any
 * panel that has a layout. Nothing else changes, so the old fields still render.
 */
export function migrateDashboard(d: Dashboard): Dashboard {
  const panels = (Array.isArray(d.panels) ? d.panels : []).map((p) => ({ ...p }))
  let bottom = 0
  for (const p of panels) {
    if (p.layout) bottom = Math.max(bottom, p.layout.y + p.layout.h)
  }
  let flowed = 0
  const h = DEFAULT_SIZE.timeseries.h
  for (const p of panels) {
    if (!p.type || !(WIDGET_TYPES as readonly string[]).includes(p.type)) p.type = 'timeseries'
    p.match = p.match ?? {}
    p.agg = p.agg ?? 'avg'
    p.unit = p.unit ?? ''
    p.thresholds = Array.isArray(p.thresholds) ? p.thresholds : []
    p.metric = p.metric ?? ''
    if (!p.layout) {
      p.layout = { x: (flowed % 2) * 6, y: bottom + Math.floor(flowed / 2) * h, w: 6, h }
      flowed++
    } else {
      const w = clampInt(p.layout.w, 1, GRID_COLS, 6)
      p.layout = {
        w,
        x: clampInt(p.layout.x, 0, GRID_COLS - w, 0),
        y: clampInt(p.layout.y, 0, 10_000, 0),
        h: clampInt(p.layout.h, 1, 100, h),
      }
    }
  }
  return { ...d, panels, variables: d.variables ?? [] }
}

/** The first free place for a panel of width `w`: below everything. */
export function nextPosition(panels: readonly Panel[], w: number, h: number): GridPos {
  const bottom = panels.reduce((m, p) => Math.max(m, (p.layout?.y ?? 0) + (p.layout?.h ?? 0)), 0)
  return { x: 0, y: bottom, w, h }
}

// ---- variables ----

const VAR_REF = /^\$([A-Za-z_][A-Za-z0-9_]*)$|^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/
export const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
/** The URL query key of a variable's value (`?var-host=web-1`). */
export const varParam = (name: string): string => `var-${name}`

/**
 * `match` with every `$name` (or `${name}`) value replaced by the chosen value. A variable
 * chosen as '' (all) drops the filter; an unknown variable is left as written.
 */
export function substituteVariables(match: Labels, values: Record<string, string>): Labels {
  const out: Labels = {}
  for (const [k, v] of Object.entries(match)) {
    const m = VAR_REF.exec(v)
    if (!m) {
      out[k] = v
      continue
    }
    const name = (m[1] ?? m[2])!
    if (!(name in values)) out[k] = v
    else if (values[name]) out[k] = values[name]!
  }
  return out
}

/** `value` as the inside of a PromQL string literal: backslash and double quote escaped. */
export function escapePromqlString(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')
}

const PROMQL_VAR = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g

/**
 * PromQL text with every `$name` (or `${name}`) of a known variable replaced by its value,
 * escaped for a string literal. A filter `label="$name"` whose variable is chosen as '' (all)
 * becomes `label=~".*"`; an unknown variable is left as written.
 */
export function substitutePromql(text: string, values: Record<string, string>): string {
  const all = text.replace(
    /([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))"/g,
    (m, label: string, a?: string, b?: string) => {
      const name = (a ?? b)!
      return name in values && values[name] === '' ? `${label}=~".*"` : m
    },
  )
  return all.replace(PROMQL_VAR, (m, a?: string, b?: string) => {
    const name = (a ?? b)!
    return name in values ? escapePromqlString(values[name]!) : m
  })
}

/** Whether a query (a panel's first, or one of `queries`) is PromQL. */
export const isPromql = (q: { promql?: string }): boolean => typeof q.promql === 'string' && q.promql.trim() !== ''

/** A short name for a PromQL query: the first metric it selects, else the text. */
export function promqlName(text: string): string {
  const stripped = text.replace(/"(?:[^"\\]|\\.)*"/g, '""')
  const m = /([A-Za-z_:][A-Za-z0-9_:]*)\s*[{[]/.exec(stripped)
  return m?.[1] ?? text.trim()
}

/** The step of a PromQL range query for a window: the chart's bucket, at least 10 s. */
export function promStep(rangeMs: number): number {
  return Math.max(10, parseInt(pickStep(rangeMs), 10))
}

/** The value each variable has: the URL's, else its default, else its first value. */
export function resolveVariableValues(
  vars: readonly DashboardVariable[],
  query: Record<string, unknown>,
  options: Record<string, string[]> = {},
): Record<string, string> {
  const out: Record<string, string> = {}
  for (const v of vars) {
    const q = query[varParam(v.name)]
    if (typeof q === 'string') out[v.name] = q
    else if (v.default !== undefined) out[v.name] = v.default
    else out[v.name] = options[v.name]?.[0] ?? v.values?.[0] ?? ''
  }
  return out
}

// ---- undo ----

/** A bounded stack of earlier states (JSON), newest last. */
export class UndoHistory {
  private stack: string[] = []
  constructor(readonly limit = 50) {}

  /** Remember `state` before a change. Equal to the newest entry: nothing. */
  push(state: unknown): void {
    const json = JSON.stringify(state)
    if (this.stack[this.stack.length - 1] === json) return
    this.stack.push(json)
    if (this.stack.length > this.limit) this.stack.splice(0, this.stack.length - this.limit)
  }

  /** The state before the last change, or null. */
  pop<T>(): T | null {
    const json = this.stack.pop()
    return json === undefined ? null : (JSON.parse(json) as T)
  }

  get size(): number {
    return this.stack.length
  }

  clear(): void {
    this.stack = []
  }
}

// ---- thresholds ----

/** The colour of the highest threshold `value` reaches, or null (none reached / no value). */
export function thresholdColor(value: number | null | undefined, thresholds: readonly Threshold[]): string | null {
  if (value === null || value === undefined || !Number.isFinite(value)) return null
  let best: Threshold | null = null
  for (const t of thresholds) {
    if (value >= t.value && (!best || t.value >= best.value)) best = t
  }
  return best?.color ?? null
}

/** Where `value` sits between `min` and `max`, 0..1. */
export function gaugeFraction(value: number | null | undefined, min = 0, max = 100): number {
  if (value === null || value === undefined || !Number.isFinite(value) || max <= min) return 0
  return Math.max(0, Math.min(1, (value - min) / (max - min)))
}

// ---- import validation ----

export class ImportError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`)
  }
}

const NAME = /^[a-zA-Z_][a-zA-Z0-9_.:-]*$/
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

function checkLabels(v: unknown, field: string): Labels {
  if (v === undefined) return {}
  if (!isObj(v)) throw new ImportError(field, 'must be an object of label → value')
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') throw new ImportError(`${field}.${k}`, 'must be a string')
  }
  return v as Labels
}

function checkNumber(v: unknown, field: string): number | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ImportError(field, 'must be a number')
  return v
}

/** Parse and check an exported dashboard; throws ImportError naming the first bad field. */
export function validateDashboard(input: unknown): Dashboard {
  let doc = input
  if (typeof input === 'string') {
    try {
      doc = JSON.parse(input)
    } catch (e) {
      throw new ImportError('(document)', `not JSON (${e instanceof Error ? e.message : String(e)})`)
    }
  }
  if (!isObj(doc)) throw new ImportError('(document)', 'must be a JSON object')
  if (typeof doc.name !== 'string' || !NAME.test(doc.name))
    throw new ImportError('name', 'must be a name like "host-overview" (letters, digits, _ . : -)')
  if (doc.title !== undefined && typeof doc.title !== 'string') throw new ImportError('title', 'must be a string')
  if (!Array.isArray(doc.panels)) throw new ImportError('panels', 'must be an array')
  const ids = new Set<string>()
  doc.panels.forEach((p: unknown, i: number) => {
    const f = `panels[${i}]`
    if (!isObj(p)) throw new ImportError(f, 'must be an object')
    if (typeof p.id !== 'string' || !p.id) throw new ImportError(`${f}.id`, 'must be a non-empty string')
    if (ids.has(p.id)) throw new ImportError(`${f}.id`, `"${p.id}" is used twice`)
    ids.add(p.id)
    if (p.type !== undefined && !(WIDGET_TYPES as readonly unknown[]).includes(p.type))
      throw new ImportError(`${f}.type`, `must be one of ${WIDGET_TYPES.join(', ')}`)
    const type = (p.type ?? 'timeseries') as WidgetType
    if (p.title !== undefined && typeof p.title !== 'string') throw new ImportError(`${f}.title`, 'must be a string')
    const needsMetric = type !== 'text' && type !== 'alerts'
    if (p.promql !== undefined && typeof p.promql !== 'string') throw new ImportError(`${f}.promql`, 'must be a string')
    if (needsMetric && !isPromql(p as { promql?: string }) && (typeof p.metric !== 'string' || !p.metric))
      throw new ImportError(`${f}.metric`, 'must name a metric')
    checkLabels(p.match, `${f}.match`)
    if (p.agg !== undefined && !(AGGREGATIONS as readonly unknown[]).includes(p.agg))
      throw new ImportError(`${f}.agg`, `must be one of ${AGGREGATIONS.join(', ')}`)
    if (p.thresholds !== undefined) {
      if (!Array.isArray(p.thresholds)) throw new ImportError(`${f}.thresholds`, 'must be an array')
      p.thresholds.forEach((t: unknown, j: number) => {
        if (!isObj(t)) throw new ImportError(`${f}.thresholds[${j}]`, 'must be an object')
        checkNumber(t.value, `${f}.thresholds[${j}].value`)
        if (typeof t.color !== 'string') throw new ImportError(`${f}.thresholds[${j}].color`, 'must be a string')
      })
    }
    if (p.layout !== undefined) {
      if (!isObj(p.layout)) throw new ImportError(`${f}.layout`, 'must be {x, y, w, h}')
      for (const k of ['x', 'y', 'w', 'h'] as const) {
        const n = checkNumber(p.layout[k], `${f}.layout.${k}`)
        if (n === undefined || n < 0) throw new ImportError(`${f}.layout.${k}`, 'must be a number ≥ 0')
      }
      if ((p.layout.w as number) < 1 || (p.layout.x as number) + (p.layout.w as number) > GRID_COLS)
        throw new ImportError(`${f}.layout`, `must fit the ${GRID_COLS}-column grid`)
    }
    if (p.queries !== undefined) {
      if (!Array.isArray(p.queries)) throw new ImportError(`${f}.queries`, 'must be an array')
      p.queries.forEach((q: unknown, j: number) => {
        if (isObj(q) && isPromql(q as { promql?: string })) return
        if (!isObj(q) || typeof q.metric !== 'string' || !q.metric)
          throw new ImportError(`${f}.queries[${j}].metric`, 'must name a metric')
        checkLabels(q.match, `${f}.queries[${j}].match`)
      })
    }
    if (p.text !== undefined && typeof p.text !== 'string') throw new ImportError(`${f}.text`, 'must be a string')
    checkNumber(p.topN, `${f}.topN`)
    checkNumber(p.min, `${f}.min`)
    checkNumber(p.max, `${f}.max`)
  })
  if (doc.variables !== undefined) {
    if (!Array.isArray(doc.variables)) throw new ImportError('variables', 'must be an array')
    doc.variables.forEach((v: unknown, i: number) => {
      const f = `variables[${i}]`
      if (!isObj(v)) throw new ImportError(f, 'must be an object')
      if (typeof v.name !== 'string' || !VARIABLE_NAME.test(v.name))
        throw new ImportError(`${f}.name`, 'must be a name like "host"')
      if (v.values !== undefined && (!Array.isArray(v.values) || v.values.some((x) => typeof x !== 'string')))
        throw new ImportError(`${f}.values`, 'must be an array of strings')
      if (v.metric !== undefined && typeof v.metric !== 'string') throw new ImportError(`${f}.metric`, 'must be a string')
    })
  }
  if (doc.range !== undefined) {
    if (!isObj(doc.range) || !isRangeKey(doc.range.key)) throw new ImportError('range.key', 'must be live, 15m, 1h, 24h, 7d or custom')
  }
  const json = JSON.stringify(doc)
  if (new Blob([json]).size > MAX_DOCUMENT_BYTES) throw new ImportError('(document)', 'is larger than 256 KiB')
  return { ...(doc as unknown as Dashboard), title: typeof doc.title === 'string' ? doc.title : doc.name }
}

/** The saved range as a RangePicker value (live when none or unknown). */
export function savedRange(d: Dashboard): TimeRange {
  const r = d.range
  if (!r || !isRangeKey(r.key)) return { key: 'live' }
  return r.key === 'custom' ? { key: 'custom', from: r.from, to: r.to } : { key: r.key }
}

// ---- values of series ----

/** The newest non-null value of each y series of aligned data. */
export function lastValues(data: ReadonlyArray<ArrayLike<number | null>>): (number | null)[] {
  const out: (number | null)[] = []
  for (let s = 1; s < data.length; s++) {
    const ys = data[s]!
    let v: number | null = null
    for (let i = ys.length - 1; i >= 0; i--) {
      const y = ys[i]
      if (y !== null && y !== undefined && Number.isFinite(y)) {
        v = y
        break
      }
    }
    out.push(v)
  }
  return out
}

/** The `n` series with the largest values, largest first (nulls left out). */
export function topN<T>(rows: ReadonlyArray<T & { value: number | null }>, n: number): (T & { value: number })[] {
  return rows
    .filter((r): r is T & { value: number } => r.value !== null)
    .sort((a, b) => b.value - a.value)
    .slice(0, Math.max(1, n))
}

/** Several aligned data sets (x first) as one, on the union of their x values. */
export function mergeAligned(sets: ReadonlyArray<ReadonlyArray<ArrayLike<number | null>>>): [number[], ...(number | null)[][]] {
  const xs = [...new Set(sets.flatMap((s) => Array.from((s[0] ?? []) as ArrayLike<number>)))].sort((a, b) => a - b)
  const at = new Map(xs.map((x, i) => [x, i]))
  const out: [number[], ...(number | null)[][]] = [xs]
  for (const s of sets) {
    const sx = (s[0] ?? []) as ArrayLike<number>
    for (let k = 1; k < s.length; k++) {
      const ys = new Array<number | null>(xs.length).fill(null)
      const src = s[k]!
      for (let i = 0; i < sx.length; i++) ys[at.get(sx[i]!)!] = src[i] ?? null
      out.push(ys)
    }
  }
  return out
}

/** JSON with object keys sorted, so two documents that differ only in key order compare equal. */
export function stableJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : x,
  )
}
