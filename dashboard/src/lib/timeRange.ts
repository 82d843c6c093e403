/** Time ranges of the explorer and dashboards, and the `step` that lets the server use rollups. */

export const LIVE_WINDOW_MS = 15 * 60_000

export const RANGE_KEYS = ['live', '15m', '1h', '24h', '7d', 'custom'] as const
export type RangeKey = (typeof RANGE_KEYS)[number]

export const RANGE_LABELS: Record<RangeKey, string> = {
  live: 'Live (15m)',
  '15m': 'Last 15 minutes',
  '1h': 'Last hour',
  '24h': 'Last 24 hours',
  '7d': 'Last 7 days',
  custom: 'Custom…',
}

const RANGE_MS: Record<Exclude<RangeKey, 'custom'>, number> = {
  live: LIVE_WINDOW_MS,
  '15m': 15 * 60_000,
  '1h': 3_600_000,
  '24h': 86_400_000,
  '7d': 7 * 86_400_000,
}

export interface TimeRange {
  key: RangeKey
  /** Unix ms, only for `custom`. */
  from?: number
  to?: number
}

export interface ResolvedRange {
  from: number
  to: number
  step?: string
  live: boolean
}

/** Buckets that line up with the server's raw, 1m and 5m data. */
const STEPS_S = [10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200, 86400]
const TARGET_POINTS = 600

/** range/600 rounded up to a step the rollups serve well. */
export function pickStep(rangeMs: number): string {
  const want = rangeMs / TARGET_POINTS / 1000
  const s = STEPS_S.find((x) => x >= want) ?? STEPS_S[STEPS_S.length - 1]!
  return `${s}s`
}

export function isRangeKey(v: unknown): v is RangeKey {
  return typeof v === 'string' && (RANGE_KEYS as readonly string[]).includes(v)
}

export function resolveRange(range: TimeRange, now: number): ResolvedRange {
  if (range.key === 'live') return { from: now - LIVE_WINDOW_MS, to: now, live: true }
  if (range.key === 'custom') {
    const to = range.to ?? now
    const from = range.from ?? to - 3_600_000
    return { from, to, step: pickStep(Math.max(1, to - from)), live: false }
  }
  const ms = RANGE_MS[range.key]
  return { from: now - ms, to: now, step: pickStep(ms), live: false }
}
