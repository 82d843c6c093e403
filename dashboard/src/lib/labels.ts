import type { Labels } from '@/api/types'

/** A stable identity for a label set, independent of key order. */
export function labelsKey(labels: Labels): string {
  const keys = Object.keys(labels).sort()
  let out = ''
  for (const k of keys) out += `${k}=${labels[k]}\u0000`
  return out
}

/** True when every `match` pair is present in `labels`. */
export function matchesLabels(labels: Labels, match: Labels | undefined): boolean {
  if (!match) return true
  for (const k in match) {
    const want = match[k]
    if (want !== undefined && want !== '' && labels[k] !== want) return false
  }
  return true
}

/** `host=a, region=eu` — for legends and tables. */
export function formatLabels(labels: Labels, omit: string[] = []): string {
  return Object.keys(labels)
    .filter((k) => !omit.includes(k))
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(', ')
}
