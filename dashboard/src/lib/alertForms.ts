/**
 * Rule and channel editors work on flat, string-typed forms; these functions turn a form into
 * the ★ spec the API takes and back, check what the browser can check (the server checks
 * everything again), and map problem+json field errors onto form fields.
 */
import { ApiError } from '@/api/client'
import { errorText } from './format'
import type {
  AlertRule,
  Channel,
  ChannelSpec,
  Labels,
  NoDataState,
  RuleAggregation,
  RuleOp,
  RuleSpec,
  SmtpTls,
} from '@/api/types'

export type FieldErrors = Record<string, string>

// A Kubernetes object name (what the server takes): dot-separated parts, at most 253 characters.
const LABEL = '[a-z0-9]([a-z0-9-]*[a-z0-9])?'
const NAME = new RegExp(`^(?=.{1,253}$)${LABEL}(\\.${LABEL})*$`)
const METRIC = /^[a-zA-Z_][a-zA-Z0-9_.:-]*$/
const DURATION = /^(0|(\d+(ms|s|m|h|d))+)$/

export function isDuration(text: string): boolean {
  return DURATION.test(text.trim())
}

/** `host=web-1, env=prod` → labels; `null` when a pair is malformed. */
export function parsePairs(text: string): Labels | null {
  const out: Labels = {}
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=')
    if (eq <= 0) return null
    out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim()
  }
  return out
}

export function formatPairs(labels: Labels | undefined): string {
  return Object.entries(labels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(', ')
}

/** The message for `field`, also when the server named something inside it (`match.host`). */
export function errorFor(errors: FieldErrors, field: string): string | undefined {
  if (errors[field]) return errors[field]
  const inner = Object.keys(errors).find((k) => k.startsWith(`${field}.`) || k.startsWith(`${field}[`))
  return inner ? `${inner}: ${errors[inner]}` : undefined
}

/** Field errors of a failed save; an error without fields lands on `_form`. */
export function fieldErrorsOf(e: unknown): FieldErrors {
  if (e instanceof ApiError) {
    const out: FieldErrors = {}
    for (const f of e.errors) out[f.field] ??= f.message
    if (!e.errors.length && e.field) out[e.field] = e.detail ?? e.title
    if (!Object.keys(out).length) out._form = e.detail ?? e.title
    return out
  }
  return { _form: errorText(e) }
}

export interface RuleForm {
  name: string
  metric: string
  match: string
  aggregation: RuleAggregation
  window: string
  op: RuleOp
  threshold: string
  for: string
  keepFiringFor: string
  severity: string
  noDataEnabled: boolean
  noDataState: NoDataState
  noDataAfter: string
  channels: string[]
  labels: string
  summary: string
  description: string
  /** Inhibition: `severity=warning, …` of the alerts it mutes, and the shared labels `host, …`. */
  inhibitsEnabled: boolean
  inhibitsMatch: string
  inhibitsEqual: string
}

export function emptyRuleForm(): RuleForm {
  return {
    name: '',
    metric: '',
    match: '',
    aggregation: 'avg',
    window: '1m',
    op: '>',
    threshold: '',
    for: '0s',
    keepFiringFor: '0s',
    severity: 'warning',
    noDataEnabled: false,
    noDataState: 'NODATA',
    noDataAfter: '5m',
    channels: [],
    labels: '',
    summary: '',
    description: '',
    inhibitsEnabled: false,
    inhibitsMatch: '',
    inhibitsEqual: '',
  }
}

export function ruleToForm(rule: AlertRule | RuleSpec): RuleForm {
  const c = rule.condition
  return {
    name: rule.name,
    metric: rule.metric,
    match: formatPairs(rule.match),
    aggregation: c.aggregation,
    window: c.window ?? '',
    op: c.op,
    threshold: String(c.threshold),
    for: rule.for ?? '0s',
    keepFiringFor: rule.keepFiringFor ?? '0s',
    severity: rule.severity ?? 'warning',
    noDataEnabled: !!rule.noData,
    noDataState: rule.noData?.state ?? 'NODATA',
    noDataAfter: rule.noData?.after ?? '5m',
    channels: [...(rule.channels ?? [])],
    labels: formatPairs(rule.labels),
    summary: rule.annotations?.summary ?? '',
    description: rule.annotations?.description ?? '',
    inhibitsEnabled: !!rule.inhibits,
    inhibitsMatch: formatPairs(rule.inhibits?.match),
    inhibitsEqual: (rule.inhibits?.equal ?? []).join(', '),
  }
}

/** `host, dc` → `['host', 'dc']`. */
export function parseList(text: string): string[] {
  return text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)
}

const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_.:-]*$/

/** The checks the browser can make before a round trip; the server's word is final. */
export function checkRuleForm(f: RuleForm): FieldErrors {
  const e: FieldErrors = {}
  if (!NAME.test(f.name)) e.name = 'lowercase letters, digits, - and ., at most 253 characters'
  if (!METRIC.test(f.metric)) e.metric = 'a metric name such as cpu.usage'
  if (parsePairs(f.match) === null) e.match = 'write key=value pairs separated by commas'
  if (f.aggregation !== 'last' && !f.window.trim()) e['condition.window'] = `${f.aggregation} needs a window, e.g. 1m`
  else if (f.window.trim() && !isDuration(f.window)) e['condition.window'] = 'a duration such as 90s, 5m or 1h'
  if (f.threshold.trim() === '' || !Number.isFinite(Number(f.threshold))) e['condition.threshold'] = 'a number'
  if (!isDuration(f.for)) e.for = 'a duration such as 0s, 2m'
  if (!isDuration(f.keepFiringFor)) e.keepFiringFor = 'a duration such as 0s, 5m'
  if (f.noDataEnabled && !isDuration(f.noDataAfter)) e['noData.after'] = 'a duration such as 5m'
  if (parsePairs(f.labels) === null) e.labels = 'write key=value pairs separated by commas'
  if (f.inhibitsEnabled) {
    if (parsePairs(f.inhibitsMatch) === null) e['inhibits.match'] = 'write key=value pairs separated by commas'
    if (!parseList(f.inhibitsEqual).every((l) => LABEL_NAME.test(l))) e['inhibits.equal'] = 'label names separated by commas'
  }
  return e
}

export function formToRule(f: RuleForm): RuleSpec {
  const annotations: Record<string, string> = {}
  if (f.summary.trim()) annotations.summary = f.summary.trim()
  if (f.description.trim()) annotations.description = f.description.trim()
  const spec: RuleSpec = {
    name: f.name.trim(),
    metric: f.metric.trim(),
    condition: { aggregation: f.aggregation, op: f.op, threshold: Number(f.threshold) },
    for: f.for.trim() || '0s',
    keepFiringFor: f.keepFiringFor.trim() || '0s',
    severity: f.severity.trim() || 'warning',
  }
  if (f.window.trim()) spec.condition.window = f.window.trim()
  const match = parsePairs(f.match)
  if (match && Object.keys(match).length) spec.match = match
  if (f.noDataEnabled) spec.noData = { state: f.noDataState, after: f.noDataAfter.trim() }
  if (f.channels.length) spec.channels = [...f.channels]
  const labels = parsePairs(f.labels)
  if (labels && Object.keys(labels).length) spec.labels = labels
  if (Object.keys(annotations).length) spec.annotations = annotations
  if (f.inhibitsEnabled) {
    const inhibits: NonNullable<RuleSpec['inhibits']> = {}
    const match = parsePairs(f.inhibitsMatch)
    if (match && Object.keys(match).length) inhibits.match = match
    const equal = parseList(f.inhibitsEqual)
    if (equal.length) inhibits.equal = equal
    spec.inhibits = inhibits
  }
  return spec
}

export interface ChannelForm {
  name: string
  kind: 'webhook' | 'email'
  url: string
  hmacSecret: string
  timeout: string
  to: string
  from: string
  host: string
  port: string
  tls: SmtpTls
  username: string
  password: string
  sendResolved: boolean
  repeatInterval: string
  /** Grouping: `alertname, host` (empty = one notification per alert), wait and interval. */
  groupBy: string
  groupWait: string
  groupInterval: string
}

export function emptyChannelForm(): ChannelForm {
  return {
    name: '',
    kind: 'webhook',
    url: '',
    hmacSecret: '',
    timeout: '',
    to: '',
    from: '',
    host: '',
    port: '',
    tls: 'starttls',
    username: '',
    password: '',
    sendResolved: true,
    repeatInterval: '4h',
    groupBy: '',
    groupWait: '30s',
    groupInterval: '5m',
  }
}

export function channelToForm(c: Channel | ChannelSpec): ChannelForm {
  const f = emptyChannelForm()
  f.name = c.name
  f.sendResolved = c.sendResolved ?? true
  f.repeatInterval = c.repeatInterval ?? '4h'
  f.groupBy = (c.groupBy ?? []).join(', ')
  f.groupWait = c.groupWait ?? '30s'
  f.groupInterval = c.groupInterval ?? '5m'
  if (c.webhook) {
    f.kind = 'webhook'
    f.url = c.webhook.url
    f.hmacSecret = c.webhook.hmacSecret ?? ''
    f.timeout = c.webhook.timeout ?? ''
  } else if (c.email) {
    f.kind = 'email'
    f.to = c.email.to.join(', ')
    f.from = c.email.from
    f.host = c.email.smtp.host
    f.port = c.email.smtp.port ? String(c.email.smtp.port) : ''
    f.tls = c.email.smtp.tls ?? 'starttls'
    f.username = c.email.smtp.username ?? ''
    f.password = c.email.smtp.password ?? ''
  }
  return f
}

export function checkChannelForm(f: ChannelForm): FieldErrors {
  const e: FieldErrors = {}
  if (!NAME.test(f.name)) e.name = 'lowercase letters, digits, - and ., at most 253 characters'
  if (f.kind === 'webhook') {
    if (!/^https?:\/\/[^\s/]/.test(f.url.trim())) e['webhook.url'] = 'an http:// or https:// URL'
    if (f.timeout.trim() && !isDuration(f.timeout)) e['webhook.timeout'] = 'a duration such as 5s'
  } else {
    if (!f.to.split(',').some((a) => a.includes('@'))) e['email.to'] = 'at least one address'
    if (!f.from.includes('@')) e['email.from'] = 'an address'
    if (!f.host.trim()) e['email.smtp.host'] = 'the SMTP server'
    if (f.port.trim() && !(Number(f.port) >= 1 && Number(f.port) <= 65535)) e['email.smtp.port'] = '1 to 65535'
  }
  if (!isDuration(f.repeatInterval)) e.repeatInterval = 'a duration such as 4h, or 0s for never'
  const groupBy = parseList(f.groupBy)
  if (!groupBy.every((l) => l === '...' || LABEL_NAME.test(l))) e.groupBy = 'label names separated by commas, or ...'
  if (groupBy.length && !isDuration(f.groupWait)) e.groupWait = 'a duration such as 30s'
  if (groupBy.length && !isDuration(f.groupInterval)) e.groupInterval = 'a duration such as 5m'
  return e
}

export function formToChannel(f: ChannelForm): ChannelSpec {
  const spec: ChannelSpec = { name: f.name.trim(), sendResolved: f.sendResolved, repeatInterval: f.repeatInterval.trim() }
  const groupBy = parseList(f.groupBy)
  if (groupBy.length) {
    spec.groupBy = groupBy
    spec.groupWait = f.groupWait.trim()
    spec.groupInterval = f.groupInterval.trim()
  }
  if (f.kind === 'webhook') {
    spec.webhook = { url: f.url.trim() }
    if (f.hmacSecret) spec.webhook.hmacSecret = f.hmacSecret
    if (f.timeout.trim()) spec.webhook.timeout = f.timeout.trim()
  } else {
    spec.email = {
      to: f.to.split(',').map((a) => a.trim()).filter(Boolean),
      from: f.from.trim(),
      smtp: { host: f.host.trim(), tls: f.tls },
    }
    if (f.port.trim()) spec.email.smtp.port = Number(f.port)
    if (f.username.trim()) spec.email.smtp.username = f.username.trim()
    if (f.password) spec.email.smtp.password = f.password
  }
  return spec
}
