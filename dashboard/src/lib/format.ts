/** Compact, human numbers: 0.123, 42.5, 1.25k, 3.4M. */
export function formatValue(v: number | null | undefined, unit = ''): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—'
  const abs = Math.abs(v)
  let s: string
  if (abs >= 1e9) s = trim(v / 1e9) + 'G'
  else if (abs >= 1e6) s = trim(v / 1e6) + 'M'
  else if (abs >= 1e4) s = trim(v / 1e3) + 'k'
  else s = trim(v)
  return unit ? `${s} ${unit}` : s
}

function trim(v: number): string {
  const abs = Math.abs(v)
  const digits = abs >= 100 ? 1 : abs >= 1 ? 2 : 3
  return String(Number(v.toFixed(digits)))
}

export function formatAgo(ts: number, now: number): string {
  const s = Math.max(0, Math.round((now - ts) / 1000))
  if (s < 60) return `${s}s ago`
  const m = Math.round(s / 60)
  if (m < 60) return `${m}m ago`
  const h = Math.round(m / 60)
  if (h < 48) return `${h}h ago`
  return `${Math.round(h / 24)}d ago`
}

export function formatTime(ts: number): string {
  return new Date(ts).toLocaleString()
}

/** The text of a caught error (an `ApiError`'s detail, an `Error`'s message, anything else). */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}
