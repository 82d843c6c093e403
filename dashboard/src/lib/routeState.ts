/** Explorer state <-> URL query, so a view can be linked and survives reloads. */
import type { LocationQuery, LocationQueryRaw } from 'vue-router'
import { AGGREGATIONS, type Aggregation, type Labels } from '@/api/types'
import { isRangeKey, type TimeRange } from './timeRange'

export interface ExplorerState {
  metric: string
  match: Labels
  agg: Aggregation
  range: TimeRange
}

function first(v: LocationQuery[string] | undefined): string | undefined {
  const x = Array.isArray(v) ? v[0] : v
  return x ?? undefined
}

export function parseMatch(s: string | undefined): Labels {
  const out: Labels = {}
  for (const part of (s ?? '').split(',')) {
    const i = part.indexOf('=')
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim()
  }
  return out
}

export function stateFromQuery(q: LocationQuery): ExplorerState {
  const agg = first(q.agg)
  const key = first(q.range)
  const range: TimeRange = { key: isRangeKey(key) ? key : 'live' }
  if (range.key === 'custom') {
    const from = Number(first(q.from))
    const to = Number(first(q.to))
    if (Number.isFinite(from) && Number.isFinite(to) && from < to) {
      range.from = from
      range.to = to
    }
  }
  return {
    metric: first(q.metric) ?? '',
    match: parseMatch(first(q.match)),
    agg: (AGGREGATIONS as readonly string[]).includes(agg ?? '') ? (agg as Aggregation) : 'avg',
    range,
  }
}

export function queryFromState(s: ExplorerState): LocationQueryRaw {
  const q: LocationQueryRaw = { range: s.range.key }
  if (s.metric) q.metric = s.metric
  const match = Object.entries(s.match)
    .map(([k, v]) => `${k}=${v}`)
    .join(',')
  if (match) q.match = match
  if (s.agg !== 'avg') q.agg = s.agg
  if (s.range.key === 'custom' && s.range.from && s.range.to) {
    q.from = String(s.range.from)
    q.to = String(s.range.to)
  }
  return q
}
