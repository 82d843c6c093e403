/**
 * Shapes of the microdash HTTP API (see docs/DESIGN.md, "HTTP API"). The server's answers are
 * the types generated from its OpenAPI document (`openapi.d.ts`, made by `npm run api-types`
 * from `openapi.json`, which a server test keeps equal to its `/openapi.json`): a change on the
 * server that the dashboard does not follow fails the type check. What the dashboard sends and
 * keeps (specs with their choices as constants, panels) is declared here.
 */
import type { components } from './openapi'

type Schemas = components['schemas']

export type Labels = Record<string, string>

export type Session = Schemas['SessionInfo']

/** A token as listed: never its secret. Times are Unix milliseconds. */
export type TokenInfo = Schemas['TokenInfo']

export type OwnTokens = Schemas['OwnTokens']

/** A token just made: the secret is shown this once. */
export type CreatedToken = Schemas['CreatedToken']

/** A public status page as its tenant edits it (`/api/v1/status-pages`). */
export type StatusPage = Schemas['StatusPageView']

/** What a status page is made of: a name the public sees and the alert rule behind it. */
export type StatusComponent = Schemas['ComponentSpec']

/** What `PUT /api/v1/status-pages/{slug}` takes. */
export interface StatusPageInput {
  title: string
  components: StatusComponent[]
}

/** Whether a silence holds back notifications now, later, or no more. */
export type SilenceStatus = 'pending' | 'active' | 'expired'

/** A silence (`/api/v1/silences`): label equality matchers (`alertname` = the rule's name), times in Unix ms. */
export type Silence = Omit<Schemas['SilenceView'], 'status'> & { status: SilenceStatus }

/** What `POST /api/v1/silences` takes: times as Unix ms or strings such as `now+2h`. */
export type SilenceInput = Schemas['SilenceInput']

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
  /** Dashboard builder fields (absent on dashboards saved before it; see builder/model.ts). */
  type?: WidgetType
  /** Place on the 12-column grid. */
  layout?: GridPos
  /** A PromQL expression (`/prometheus/api/v1/query_range`) used instead of metric, match and agg. */
  promql?: string
  /** More queries of a time series panel, drawn with the first (`metric`, `match`, `agg`). */
  queries?: PanelQuery[]
  /** Show uPlot's legend (time series). */
  legend?: boolean
  /** Markdown of a text panel. */
  text?: string
  /** How many series a top-N panel lists. */
  topN?: number
  /** Scale of a gauge. */
  min?: number
  max?: number
}

export const WIDGET_TYPES = ['timeseries', 'stat', 'gauge', 'topn', 'alerts', 'text'] as const
export type WidgetType = (typeof WIDGET_TYPES)[number]

export interface GridPos {
  x: number
  y: number
  w: number
  h: number
}

export interface PanelQuery {
  metric: string
  match: Labels
  agg: Aggregation
  /** A PromQL expression used instead of metric, match and agg. */
  promql?: string
}

/** A dashboard variable: `$name` in a panel's label filters becomes the chosen value. */
export interface DashboardVariable {
  name: string
  /** Shown in the select bar; defaults to the name. */
  label?: string
  /** Values come from this metric's series (label key `key`, else `name`)… */
  metric?: string
  key?: string
  /** …or are listed here. */
  values?: string[]
  /** Chosen when the URL names none; '' = all. */
  default?: string
}

export interface Dashboard {
  name: string
  title: string
  panels: Panel[]
  variables?: DashboardVariable[]
  /** Saved time range (`key` of RangePicker, `from`/`to` for custom). */
  range?: { key: string; from?: number; to?: number }
}

export type AlertState = Schemas['AlertState']
export const ALERT_STATES = ['OK', 'PENDING', 'FIRING', 'RESOLVED', 'NODATA'] as const satisfies readonly AlertState[]

/** An alert instance: `rule` and `labels` are its identity. */
export type AlertInstance = Schemas['AlertView']

export type AlertTransition = Schemas['TransitionView']

/** One invalid field of a rule or channel, as the server names it (`condition.window`). */
export interface FieldError {
  field: string
  message: string
}

export const RULE_AGGREGATIONS = ['last', 'avg', 'min', 'max', 'sum', 'count', 'rate'] as const
export type RuleAggregation = (typeof RULE_AGGREGATIONS)[number]
export const RULE_OPS = ['>', '>=', '<', '<=', '==', '!='] as const
export type RuleOp = (typeof RULE_OPS)[number]
export const NODATA_STATES = ['NODATA', 'OK', 'FIRING'] as const
export type NoDataState = (typeof NODATA_STATES)[number]

/** The ★ rule spec with `name` beside it, as `/api/v1/rules` takes it. */
export interface RuleSpec {
  name: string
  metric: string
  match?: Labels
  condition: { aggregation: RuleAggregation; window?: string; op: RuleOp; threshold: number }
  for?: string
  keepFiringFor?: string
  severity?: string
  noData?: { state: NoDataState; after: string }
  channels?: string[]
  labels?: Labels
  annotations?: Record<string, string>
  /** While an alert of this rule fires, it mutes other rules' alerts that match and share `equal`. */
  inhibits?: { match?: Labels; equal?: string[] }
}

export interface AlertRule extends RuleSpec {
  createdAt: number
  updatedAt: number
  status: { state: AlertState; instances: number; firing: number }
}

export type SmtpTls = 'starttls' | 'tls' | 'none'

/** The ★ channel spec with `name` beside it; secrets read back as `<set>`. */
export interface ChannelSpec {
  name: string
  webhook?: { url: string; hmacSecret?: string; headers?: Record<string, string>; timeout?: string }
  email?: {
    to: string[]
    from: string
    smtp: { host: string; port?: number; tls?: SmtpTls; username?: string; password?: string }
  }
  sendResolved?: boolean
  repeatInterval?: string
  /** One notification per group of alerts sharing these labels' values (`alertname`, `...`). */
  groupBy?: string[]
  groupWait?: string
  groupInterval?: string
}

export type DeliveryStatus = 'pending' | 'delivered' | 'failed'

export interface Channel extends ChannelSpec {
  createdAt: number
  updatedAt: number
  lastDelivery?: { status: DeliveryStatus; at: number; error?: string }
}

export type DeliveryAttempt = Schemas['AttemptView']

/** A delivery; `idempotencyKey` identifies it (the key the receiver gets with every attempt). */
export type Delivery = Omit<Schemas['DeliveryView'], 'status'> & { status: DeliveryStatus }

export type ChannelTestResult = Schemas['TestResult']
