/**
 * A page's first query, started by the router while the page's code and the session check are
 * still on their way, so the first chart does not wait for them one after the other. A chart
 * takes the result once when it asks for the same metric, labels, aggregation and range soon
 * after; anything else (a later reload, another chart, a stale or failed prefetch) queries as
 * usual. The request never sends the user to the login page: the session check does that.
 */
import { api } from '@/api/client'
import type { Aggregation, Labels, QueryParams, QueryResult } from '@/api/types'
import { resolveRange, type ResolvedRange, type TimeRange } from './timeRange'

export interface QueryKey {
  metric: string
  match?: Labels
  agg?: Aggregation
  range: TimeRange
}

export interface Prefetched {
  /** The window the result covers; a live chart queries what came after `range.to`. */
  range: ResolvedRange
  result: Promise<QueryResult>
}

/** Older than this, a prefetched result is not worth taking (a live window moves on). */
export const PREFETCH_MAX_AGE_MS = 10_000

let pending: (Prefetched & { key: string; at: number }) | null = null

function keyOf(q: QueryKey): string {
  const match = Object.entries(q.match ?? {})
    .filter(([k, v]) => k && v !== '')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return JSON.stringify([q.metric, match, q.agg ?? 'avg', q.range.key, q.range.from ?? null, q.range.to ?? null])
}

/** A second prefetch of the same query this soon keeps the first (boot.ts, then the router). */
const PREFETCH_REUSE_MS = 2_000

/**
 * Start `q` now; a later `takePrefetched(q)` gets it. Replaces an earlier prefetch, unless that
 * is of the same query and under 2 s old.
 */
export function prefetchQuery(q: QueryKey, now = Date.now()): void {
  if (!q.metric) return
  const key = keyOf(q)
  if (pending && pending.key === key && now - pending.at >= 0 && now - pending.at < PREFETCH_REUSE_MS) return
  const range = resolveRange(q.range, now)
  const result = api.query(paramsOf(q, range), undefined, { allow401: true })
  // Nobody may take it: keep an unused failure from being reported as unhandled.
  result.catch(() => undefined)
  pending = { key, at: now, range, result }
}

function paramsOf(q: QueryKey, range: ResolvedRange): QueryParams {
  return { metric: q.metric, match: q.match, from: range.from, to: range.to, step: range.step, agg: q.agg }
}

/** What `prefetchQuery(q, now)` asks the API for; `null` when it asks nothing. */
export function queryParams(q: QueryKey, now: number): QueryParams | null {
  return q.metric ? paramsOf(q, resolveRange(q.range, now)) : null
}

/** The prefetched query for `q`, once; `null` when there is none, it is for another query, or it is too old. */
export function takePrefetched(q: QueryKey, now = Date.now()): Prefetched | null {
  const p = pending
  if (!p || p.key !== keyOf(q)) return null
  pending = null
  if (now - p.at > PREFETCH_MAX_AGE_MS) return null
  return { range: p.range, result: p.result }
}
