/**
 * The one typed client of the microdash API. Every call goes to the same origin with the
 * session cookie; errors become `ApiError` carrying the problem+json fields.
 */
import type {
  AlertInstance,
  AlertRule,
  AlertTransition,
  Channel,
  ChannelSpec,
  ChannelTestResult,
  CreatedToken,
  Dashboard,
  Delivery,
  FieldError,
  RuleSpec,
  Labels,
  OwnTokens,
  QueryParams,
  QueryResult,
  Point,
  Session,
  SeriesList,
  Silence,
  SilenceInput,
  StatusPage,
  StatusPageInput,
} from './types'
import { takeStarted } from '@/lib/started'

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail?: string,
    /** Names the offending input field when the server says which one. */
    readonly field?: string,
    /** Every invalid field, for a rule or channel with several mistakes. */
    readonly errors: FieldError[] = [],
  ) {
    super(detail || title)
    this.name = 'ApiError'
  }
}

type UnauthorizedHandler = () => void
let onUnauthorized: UnauthorizedHandler = () => {}

/** Tells the app that the session is gone (also used by the live stream, which cannot see statuses). */
export function notifyUnauthorized(): void {
  onUnauthorized()
}

/** Called on any 401 except the session probe and login, whose 401 is an answer, not a lapse. */
export function setUnauthorizedHandler(handler: UnauthorizedHandler): void {
  onUnauthorized = handler
}

interface RequestOptions {
  query?: URLSearchParams
  body?: unknown
  /** Let a 401 reach the caller without sending the user to the login page. */
  allow401?: boolean
  signal?: AbortSignal
}

async function toApiError(res: Response): Promise<ApiError> {
  const type = res.headers.get('content-type') ?? ''
  if (type.includes('json')) {
    try {
      const problem = (await res.json()) as { title?: unknown; detail?: unknown; field?: unknown; errors?: unknown }
      const str = (v: unknown) => (typeof v === 'string' && v ? v : undefined)
      const errors = Array.isArray(problem.errors)
        ? problem.errors.filter(
            (e): e is FieldError => typeof e?.field === 'string' && typeof e?.message === 'string',
          )
        : []
      return new ApiError(
        res.status,
        str(problem.title) ?? res.statusText ?? `HTTP ${res.status}`,
        str(problem.detail),
        str(problem.field),
        errors,
      )
    } catch {
      // A body that claims JSON but is not: fall through to the status line.
    }
  }
  return new ApiError(res.status, res.statusText || `HTTP ${res.status}`)
}

async function request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' }
  let body: string | undefined
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json'
    body = JSON.stringify(opts.body)
  }
  const qs = opts.query?.toString()
  const url = qs ? `${path}?${qs}` : path
  // A GET the page's first script already started (lib/started.ts) is not asked again.
  const started = method === 'GET' && !opts.signal ? takeStarted(url) : undefined
  const res = await (started ??
    fetch(url, {
      method,
      headers,
      body,
      credentials: 'same-origin',
      signal: opts.signal,
    }))
  if (!res.ok) {
    const err = await toApiError(res)
    if (res.status === 401 && !opts.allow401) onUnauthorized()
    throw err
  }
  if (res.status === 204) return undefined as T
  // Some 200s (a PUT) may come without a body.
  const text = await res.text()
  return (text ? JSON.parse(text) : undefined) as T
}

/** `k=v,k2=v2`, the `match` syntax of the query and stream endpoints. */
export function formatMatch(match: Labels | undefined): string {
  if (!match) return ''
  return Object.entries(match)
    .filter(([k, v]) => k && v !== '')
    .map(([k, v]) => `${k}=${v}`)
    .join(',')
}

export function streamUrl(metrics: string[] | null, match?: Labels): string {
  const q = new URLSearchParams()
  for (const m of metrics ?? []) q.append('metric', m)
  const m = formatMatch(match)
  if (m) q.set('match', m)
  const qs = q.toString()
  return qs ? `/api/v1/stream?${qs}` : '/api/v1/stream'
}

/** A value of a Prometheus sample: numbers, or `NaN`, `+Inf`, `-Inf` (those become null: no point). */
function promValue(v: unknown): number | null {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN
  return Number.isFinite(n) ? n : null
}

/**
 * A Prometheus `matrix` (or `vector`) result as the series the charts use: labels and
 * `[ts_ms, value]` points, the non-finite values (NaN, ±Inf) left out.
 */
export function promMatrixToSeries(data: unknown): QueryResult['series'] {
  const d = data as { resultType?: unknown; result?: unknown } | null
  if (!d || !Array.isArray(d.result)) return []
  const out: QueryResult['series'] = []
  for (const r of d.result as { metric?: Labels; values?: unknown[]; value?: unknown }[]) {
    const raw = Array.isArray(r.values) ? r.values : Array.isArray(r.value) ? [r.value] : []
    const points: Point[] = []
    for (const p of raw) {
      if (!Array.isArray(p)) continue
      const ts = Number(p[0])
      const v = promValue(p[1])
      if (Number.isFinite(ts) && v !== null) points.push([Math.round(ts * 1000), v])
    }
    out.push({ labels: { ...(r.metric ?? {}) }, points })
  }
  return out
}

/** A Prometheus API error (`{status: "error", error}`) or any failed answer, as an ApiError. */
async function promError(res: Response): Promise<ApiError> {
  try {
    const body = (await res.clone().json()) as { status?: unknown; error?: unknown; errorType?: unknown }
    if (body && typeof body.error === 'string' && body.error)
      return new ApiError(res.status, typeof body.errorType === 'string' ? body.errorType : 'error', body.error)
  } catch {
    // not the Prometheus shape
  }
  return toApiError(res)
}

const enc = encodeURIComponent

function queryParamsOf(p: QueryParams): URLSearchParams {
  const q = new URLSearchParams({ metric: p.metric, from: String(p.from), to: String(p.to) })
  const match = formatMatch(p.match)
  if (match) q.set('match', match)
  if (p.step) q.set('step', p.step)
  if (p.agg) q.set('agg', p.agg)
  return q
}

/** The URL `api.query(p)` requests. */
export function queryUrl(p: QueryParams): string {
  return `/api/v1/query?${queryParamsOf(p)}`
}

export const api = {
  /** The current session, or `null` when not logged in. */
  async getSession(): Promise<Session | null> {
    try {
      return await request<Session>('GET', '/api/v1/session', { allow401: true })
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return null
      throw e
    }
  },
  login(token: string): Promise<Session> {
    return request<Session>('POST', '/api/v1/session', { body: { token }, allow401: true })
  },
  logout(): Promise<void> {
    return request<void>('DELETE', '/api/v1/session', { allow401: true })
  },

  tokens(): Promise<OwnTokens> {
    return request<OwnTokens>('GET', '/api/v1/tokens')
  },
  /** `expiresIn` like `30d`; omitted = never expires. */
  createToken(scopes: string[], expiresIn?: string): Promise<CreatedToken> {
    return request<CreatedToken>('POST', '/api/v1/tokens', {
      body: expiresIn ? { scopes, expires_in: expiresIn } : { scopes },
    })
  },
  revokeToken(id: number): Promise<void> {
    return request<void>('DELETE', `/api/v1/tokens/${id}`)
  },

  async metrics(): Promise<string[]> {
    return (await request<{ metrics: string[] }>('GET', '/api/v1/metrics')).metrics
  },
  series(metric: string, signal?: AbortSignal): Promise<SeriesList> {
    return request<SeriesList>('GET', '/api/v1/series', {
      query: new URLSearchParams({ metric }),
      signal,
    })
  },
  /** `allow401`: a 401 is the caller's to handle (a prefetch made before the session check). */
  query(p: QueryParams, signal?: AbortSignal, opts: { allow401?: boolean } = {}): Promise<QueryResult> {
    return request<QueryResult>('GET', '/api/v1/query', { query: queryParamsOf(p), signal, allow401: opts.allow401 })
  },
  /**
   * A PromQL range query (`/prometheus/api/v1/query_range`): `start`/`end` in ms, `step` in
   * seconds. Prometheus' `{status: "error", error}` becomes an ApiError with that message.
   */
  async promRange(query: string, start: number, end: number, step: number, signal?: AbortSignal): Promise<QueryResult['series']> {
    const q = new URLSearchParams({
      query,
      start: (start / 1000).toFixed(3),
      end: (end / 1000).toFixed(3),
      step: String(step),
    })
    const res = await fetch(`/prometheus/api/v1/query_range?${q}`, {
      headers: { Accept: 'application/json' },
      credentials: 'same-origin',
      signal,
    })
    if (!res.ok) {
      const err = await promError(res)
      if (res.status === 401) onUnauthorized()
      throw err
    }
    const body = (await res.json()) as { status?: unknown; error?: unknown; data?: unknown }
    if (body.status === 'error') throw new ApiError(res.status, 'error', typeof body.error === 'string' ? body.error : 'query failed')
    return promMatrixToSeries(body.data)
  },

  /** Values of a label (Prometheus-compatible API), optionally only of series matching `match` selectors. */
  async labelValues(name: string, match: string[] = [], signal?: AbortSignal): Promise<string[]> {
    const query = new URLSearchParams()
    for (const m of match) query.append('match[]', m)
    return (await request<{ data: string[] }>('GET', `/prometheus/api/v1/label/${enc(name)}/values`, { query, signal })).data
  },

  async dashboards(): Promise<Dashboard[]> {
    return (await request<{ dashboards: Dashboard[] }>('GET', '/api/v1/dashboards')).dashboards
  },
  saveDashboard(d: Dashboard): Promise<unknown> {
    return request('PUT', `/api/v1/dashboards/${enc(d.name)}`, { body: d })
  },
  deleteDashboard(name: string): Promise<void> {
    return request<void>('DELETE', `/api/v1/dashboards/${enc(name)}`)
  },

  async alerts(): Promise<AlertInstance[]> {
    return (await request<{ alerts: AlertInstance[] }>('GET', '/api/v1/alerts')).alerts
  },
  async alertHistory(limit = 100): Promise<AlertTransition[]> {
    const query = new URLSearchParams({ limit: String(limit) })
    return (await request<{ transitions: AlertTransition[] }>('GET', '/api/v1/alerts/history', { query }))
      .transitions
  },

  async rules(): Promise<AlertRule[]> {
    return (await request<{ rules: AlertRule[] }>('GET', '/api/v1/rules')).rules
  },
  /** Creates (`isNew`) or replaces a rule; a 422 carries the invalid fields in `errors`. */
  saveRule(rule: RuleSpec, isNew: boolean): Promise<AlertRule> {
    return isNew
      ? request<AlertRule>('POST', '/api/v1/rules', { body: rule })
      : request<AlertRule>('PUT', `/api/v1/rules/${enc(rule.name)}`, { body: rule })
  },
  deleteRule(name: string): Promise<void> {
    return request<void>('DELETE', `/api/v1/rules/${enc(name)}`)
  },

  async statusPages(): Promise<StatusPage[]> {
    return (await request<{ pages: StatusPage[] }>('GET', '/api/v1/status-pages')).pages
  },
  /** Creates or replaces the page `slug`; a 422 or 409 names the field in `field`. */
  saveStatusPage(slug: string, page: StatusPageInput): Promise<StatusPage> {
    return request<StatusPage>('PUT', `/api/v1/status-pages/${enc(slug)}`, { body: page })
  },
  deleteStatusPage(slug: string): Promise<void> {
    return request<void>('DELETE', `/api/v1/status-pages/${enc(slug)}`)
  },

  async silences(): Promise<Silence[]> {
    return (await request<{ silences: Silence[] }>('GET', '/api/v1/silences')).silences
  },
  /** A 422 names the offending field (`matchers`, `endsAt`, `comment`, `createdBy`) in `field`. */
  createSilence(input: SilenceInput): Promise<Silence> {
    return request<Silence>('POST', '/api/v1/silences', { body: input })
  },
  /** Ends a pending or active silence now; 404 when it is unknown or already over. */
  expireSilence(id: string): Promise<void> {
    return request<void>('DELETE', `/api/v1/silences/${enc(id)}`)
  },

  async channels(): Promise<Channel[]> {
    return (await request<{ channels: Channel[] }>('GET', '/api/v1/channels')).channels
  },
  saveChannel(channel: ChannelSpec, isNew: boolean): Promise<Channel> {
    return isNew
      ? request<Channel>('POST', '/api/v1/channels', { body: channel })
      : request<Channel>('PUT', `/api/v1/channels/${enc(channel.name)}`, { body: channel })
  },
  deleteChannel(name: string): Promise<void> {
    return request<void>('DELETE', `/api/v1/channels/${enc(name)}`)
  },
  testChannel(name: string): Promise<ChannelTestResult> {
    return request<ChannelTestResult>('POST', `/api/v1/channels/${enc(name)}/test`)
  },
  async deliveries(name: string, limit = 50): Promise<Delivery[]> {
    const query = new URLSearchParams({ limit: String(limit) })
    return (
      await request<{ deliveries: Delivery[] }>('GET', `/api/v1/channels/${enc(name)}/deliveries`, { query })
    ).deliveries
  },
}

/** Live alert transitions (SSE, `event: transition`). */
export const ALERT_STREAM_URL = '/api/v1/alerts/stream'

export type Api = typeof api
