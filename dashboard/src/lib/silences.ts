/**
 * Silences (docs/alerting.md, "Silences"): how the dashboard orders and describes them, and the
 * matcher rows of the create form (to and from the URL that opens it from an alert).
 */
import type { Labels, Silence, SilenceStatus } from '@/api/types'

/** One editable matcher of the form: a label name and the value it must equal. */
export interface MatcherRow {
  name: string
  value: string
}

/** The duration presets of the form; `now+<value>` is what the server gets. */
export const SILENCE_DURATIONS = [
  { value: '1h', label: '1h' },
  { value: '2h', label: '2h' },
  { value: '4h', label: '4h' },
  { value: '1d', label: '1d' },
] as const

/** `45s`, `20m`, `1h 20m`, `2d 3h`: a length of time as people say it (to the nearest minute from one minute on). */
export function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000))
  if (seconds < 60) return `${seconds}s`
  const minutes = Math.round(seconds / 60)
  if (minutes < 60) return `${minutes}m`
  const hours = Math.floor(minutes / 60)
  if (hours < 24) return minutes % 60 ? `${hours}h ${minutes % 60}m` : `${hours}h`
  const days = Math.floor(hours / 24)
  return hours % 24 ? `${days}d ${hours % 24}h` : `${days}d`
}

/**
 * The status at `now`: the server's, moved on when a start or end passed while the page was
 * open, never back (a silence the server called active stays so on a browser clock a little
 * behind the server's; one it called expired, e.g. expired early, stays expired).
 */
export function silenceStatus(s: Silence, now: number): SilenceStatus {
  if (s.status === 'expired' || now >= s.endsAt) return 'expired'
  if (s.status === 'active') return 'active'
  return now < s.startsAt ? 'pending' : 'active'
}

/** `ends in 1h 20m`, `starts in 10m (for 2h)`, `ended 3h ago`. */
export function silenceTiming(s: Silence, now: number): string {
  switch (silenceStatus(s, now)) {
    case 'pending':
      return `starts in ${formatDuration(s.startsAt - now)} (for ${formatDuration(s.endsAt - s.startsAt)})`
    case 'active':
      return `ends in ${formatDuration(s.endsAt - now)}`
    default:
      return `ended ${formatDuration(now - Math.min(s.endsAt, now))} ago`
  }
}

/**
 * Current silences first (active ones ending soonest first, then pending ones starting soonest
 * first), and apart the expired ones, most recently ended first.
 */
export function sortSilences(list: Silence[], now: number): { current: Silence[]; expired: Silence[] } {
  const rank = { active: 0, pending: 1, expired: 2 } as const
  const withStatus = list.map((s) => ({ s, status: silenceStatus(s, now) }))
  const current = withStatus
    .filter((x) => x.status !== 'expired')
    .sort(
      (a, b) =>
        rank[a.status] - rank[b.status] ||
        (a.status === 'active' ? a.s.endsAt - b.s.endsAt : a.s.startsAt - b.s.startsAt) ||
        a.s.id.localeCompare(b.s.id),
    )
    .map((x) => x.s)
  const expired = withStatus
    .filter((x) => x.status === 'expired')
    .map((x) => x.s)
    .sort((a, b) => b.endsAt - a.endsAt || a.id.localeCompare(b.id))
  return { current, expired }
}

/** Matchers in the order people read them: `alertname` first, then by name. */
export function matcherEntries(matchers: Labels): [string, string][] {
  return Object.entries(matchers).sort(([a], [b]) =>
    a === 'alertname' ? -1 : b === 'alertname' ? 1 : a.localeCompare(b),
  )
}

/**
 * The matchers that select one alert: `alertname` = its rule, and its labels (the series'
 * labels with the rule's `labels` over them, as the server matches them).
 */
export function alertMatchers(rule: string, labels: Labels, ruleLabels: Labels = {}): MatcherRow[] {
  const all: Labels = { ...labels, ...ruleLabels, alertname: rule }
  return matcherEntries(all).map(([name, value]) => ({ name, value }))
}

/** Matcher rows as the `matcher` query parameter (`name=value`, repeated) of `/silences?new=1`. */
export function matchersToQuery(rows: MatcherRow[]): string[] {
  return rows.map((r) => `${r.name}=${r.value}`)
}

/** Back from the query: split at the first `=` (values may hold more); malformed entries are dropped. */
export function matchersFromQuery(param: unknown): MatcherRow[] {
  const list = Array.isArray(param) ? param : param === undefined || param === null ? [] : [param]
  const rows: MatcherRow[] = []
  for (const item of list) {
    if (typeof item !== 'string') continue
    const i = item.indexOf('=')
    if (i <= 0) continue
    rows.push({ name: item.slice(0, i), value: item.slice(i + 1) })
  }
  return rows
}

/**
 * The `matchers` object the server takes, or the reason the rows are not one: a blank name or
 * value, or a name given twice (an object keeps one value per name).
 */
export function matchersFromRows(rows: MatcherRow[]): { matchers: Labels } | { error: string } {
  const matchers: Labels = {}
  if (!rows.length) return { error: 'Add at least one matcher: a silence of everything is not one.' }
  for (const [i, r] of rows.entries()) {
    const name = r.name.trim()
    if (!name || !r.value.trim()) return { error: `Matcher ${i + 1} needs both a label name and a value.` }
    if (name in matchers) return { error: `The label ${name} is matched twice; keep one.` }
    matchers[name] = r.value
  }
  return { matchers }
}

/** `<input type="datetime-local">`'s value for a time (local time, minutes). */
export function toLocalInput(ms: number): string {
  const d = new Date(ms)
  const pad = (n: number) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`
}
