/** Shapes of the microdash HTTP API (see DESIGN.md, "HTTP API"). */

export type Labels = Record<string, string>

export interface Session {
  tenant: string
  scopes: string[]
}

/** A point as the server sends it: `[ts_ms, value]`. */
export type Point = [number, number]

export interface SeriesInfo {
  labels: Labels
  last: Point | null
}

export interface SeriesList {
  metric: string
  series: SeriesInfo[]
}

export const AGGREGATIONS = ['avg', 'min', 'max', 'sum', 'count', 'last'] as const
export type Aggregation = (typeof AGGREGATIONS)[number]

export type Resolution = 'raw' | '1m' | '5m'

export interface QueryParams {
  metric: string
  match?: Labels
  from: number
  to: number
  /** Bucket width such as `60s`; omitted asks for raw points. */
  step?: string
  agg?: Aggregation
}

export interface QueryResult {
  resolution: Resolution
  series: { labels: Labels; points: Point[] }[]
}

/** One `event: sample` of `/api/v1/stream`. */
export interface LiveSample {
  metric: string
  labels: Labels
  ts: number
  value: number
}

export interface Threshold {
  value: number
  color: string
}

export interface Panel {
  id: string
  title: string
  metric: string
  match: Labels
  agg: Aggregation
  unit: string
  thresholds: Threshold[]
}

export interface Dashboard {
  name: string
  title: string
  panels: Panel[]
}

export const ALERT_STATES = ['OK', 'PENDING', 'FIRING', 'RESOLVED', 'NODATA'] as const
export type AlertState = (typeof ALERT_STATES)[number]

export interface AlertInstance {
  rule: string
  labels: Labels
  state: AlertState
  value: number | null
  since: number
}

export interface AlertTransition {
  rule: string
  labels: Labels
  from: AlertState
  to: AlertState
  value: number | null
  at: number
}
