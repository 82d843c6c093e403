/**
 * Latest value of every series, grouped by the `host` label: seeded from `/series` for each
 * metric (a bounded number of calls, a few at a time), then kept current by the live stream.
 */
import { computed, onBeforeUnmount, ref, shallowRef } from 'vue'
import { api } from '@/api/client'
import type { Labels, LiveSample } from '@/api/types'
import { summarizeHost, type HostSummary } from '@/lib/hostSummary'
import { labelsKey } from '@/lib/labels'
import { mapLimit } from '@/lib/pool'
import { useLiveStore } from '@/stores/live'
import { errorText } from '@/lib/format'

export const NO_HOST = '(no host)'
/** Bounds the fan-out of `/series` calls on tenants with many metrics. */
export const MAX_METRICS = 100
const CONCURRENCY = 4
const FLUSH_MS = 250

export interface HostRow {
  key: string
  metric: string
  labels: Labels
  ts: number | null
  value: number | null
  /** The value before, for the rates of counters (`*_total`). */
  prevTs: number | null
  prevValue: number | null
}

export interface HostGroup {
  host: string
  rows: HostRow[]
  lastTs: number | null
  /** CPU by mode, disk I/O, network errors, filesystem fill; null without agent metrics. */
  summary: HostSummary | null
}

export function useHostOverview() {
  const live = useLiveStore()
  const loading = ref(true)
  const error = ref<string | null>(null)
  const metricCount = ref(0)
  const truncated = ref(false)
  const rows = new Map<string, HostRow>()
  /** Bumped when `rows` changed; the grouping recomputes from it. */
  const version = shallowRef(0)
  let flushTimer: ReturnType<typeof setTimeout> | null = null

  function rowKey(metric: string, labels: Labels): string {
    return `${metric}\u0001${labelsKey(labels)}`
  }

  function upsert(metric: string, labels: Labels, ts: number | null, value: number | null): void {
    const key = rowKey(metric, labels)
    const row = rows.get(key)
    if (!row) rows.set(key, { key, metric, labels, ts, value, prevTs: null, prevValue: null })
    else if (ts !== null && (row.ts === null || ts >= row.ts)) {
      if (row.ts !== null && ts > row.ts) {
        row.prevTs = row.ts
        row.prevValue = row.value
      }
      row.ts = ts
      row.value = value
    }
  }

  function onSample(s: LiveSample): void {
    upsert(s.metric, s.labels, s.ts, s.value)
    if (!flushTimer) {
      flushTimer = setTimeout(() => {
        flushTimer = null
        version.value++
      }, FLUSH_MS)
    }
  }

  async function load(): Promise<void> {
    loading.value = true
    error.value = null
    try {
      const metrics = await api.metrics()
      metricCount.value = metrics.length
      truncated.value = metrics.length > MAX_METRICS
      const picked = [...metrics].sort().slice(0, MAX_METRICS)
      const results = await mapLimit(picked, CONCURRENCY, (m) => api.series(m))
      let failures = 0
      results.forEach((r, i) => {
        if (r.status === 'rejected') return void failures++
        for (const s of r.value.series) upsert(picked[i]!, s.labels, s.last?.[0] ?? null, s.last?.[1] ?? null)
      })
      if (failures === results.length && failures > 0) {
        const first = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
        throw first.reason
      }
      version.value++
    } catch (e) {
      error.value = errorText(e)
    } finally {
      loading.value = false
    }
  }

  // Subscribe first so nothing that arrives during the initial load is missed.
  const unsubscribe = live.subscribe({}, onSample, () => void load())
  onBeforeUnmount(() => {
    unsubscribe()
    if (flushTimer) clearTimeout(flushTimer)
  })
  void load()

  const groups = computed<HostGroup[]>(() => {
    void version.value
    const byHost = new Map<string, HostRow[]>()
    for (const row of rows.values()) {
      const host = row.labels.host ?? NO_HOST
      let list = byHost.get(host)
      if (!list) byHost.set(host, (list = []))
      // A copy, so the template sees new values on every flush.
      list.push({ ...row })
    }
    return [...byHost.entries()]
      .sort(([a], [b]) => (a === NO_HOST ? 1 : b === NO_HOST ? -1 : a.localeCompare(b)))
      .map(([host, list]) => ({
        host,
        rows: list.sort((a, b) => a.metric.localeCompare(b.metric) || a.key.localeCompare(b.key)),
        lastTs: list.reduce<number | null>((m, r) => (r.ts !== null && (m === null || r.ts > m) ? r.ts : m), null),
        summary: summarizeHost(list),
      }))
  })

  return { groups, loading, error, metricCount, truncated, reload: load }
}
