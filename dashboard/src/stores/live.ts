/**
 * The page's single live connection. Panels subscribe with a filter; the store keeps ONE
 * EventSource whose `metric=` list is the union of what subscribers want (every metric when
 * any subscriber, or none, asks for all) and hands each sample to the subscribers it matches.
 * Label matching happens here, so panels with different filters share one connection.
 */
import { defineStore } from 'pinia'
import { ref } from 'vue'
import { api, notifyUnauthorized, streamUrl } from '@/api/client'
import type { Labels, LiveSample } from '@/api/types'
import { matchesLabels } from '@/lib/labels'

export type LiveState = 'live' | 'reconnecting' | 'offline'

export interface LiveFilter {
  /** Metric names; empty or absent means every metric of the tenant. */
  metrics?: string[]
  /** Label equality matchers applied to each sample. */
  match?: Labels
}

export type SampleHandler = (sample: LiveSample) => void

interface Subscription {
  metrics: string[]
  match: Labels | undefined
  handler: SampleHandler
}

const MIN_RETRY_MS = 1000
const MAX_RETRY_MS = 30_000
const IDLE_OPEN_MS = 300

export function parseSample(data: string): LiveSample | null {
  try {
    const s = JSON.parse(data) as Partial<LiveSample>
    if (typeof s.metric !== 'string' || typeof s.ts !== 'number' || typeof s.value !== 'number') {
      return null
    }
    return { metric: s.metric, ts: s.ts, value: s.value, labels: s.labels ?? {} }
  } catch {
    return null
  }
}

export const useLiveStore = defineStore('live', () => {
  const state = ref<LiveState>('offline')
  /** URL of the open stream, `null` when closed. */
  const url = ref<string | null>(null)

  // Plain (non-reactive) bookkeeping: samples are dispatched in the hot path.
  const byMetric = new Map<string, Set<Subscription>>()
  const allMetrics = new Set<Subscription>()
  let enabled = false
  let source: EventSource | null = null
  let reconcileQueued = false
  let retryTimer: ReturnType<typeof setTimeout> | null = null
  let retryDelay = MIN_RETRY_MS
  let idleTimer: ReturnType<typeof setTimeout> | null = null

  function subscribe(filter: LiveFilter, handler: SampleHandler): () => void {
    const sub: Subscription = {
      metrics: [...new Set(filter.metrics ?? [])],
      match: filter.match && Object.keys(filter.match).length ? { ...filter.match } : undefined,
      handler,
    }
    if (sub.metrics.length === 0) allMetrics.add(sub)
    for (const m of sub.metrics) {
      let set = byMetric.get(m)
      if (!set) byMetric.set(m, (set = new Set()))
      set.add(sub)
    }
    queueReconcile()
    let active = true
    return () => {
      if (!active) return
      active = false
      allMetrics.delete(sub)
      for (const m of sub.metrics) {
        const set = byMetric.get(m)
        set?.delete(sub)
        if (set?.size === 0) byMetric.delete(m)
      }
      queueReconcile()
    }
  }

  function dispatch(sample: LiveSample): void {
    const subs = byMetric.get(sample.metric)
    if (subs) for (const sub of subs) deliver(sub, sample)
    for (const sub of allMetrics) deliver(sub, sample)
  }

  function deliver(sub: Subscription, sample: LiveSample): void {
    if (!matchesLabels(sample.labels, sub.match)) return
    try {
      sub.handler(sample)
    } catch (e) {
      // One broken panel must not starve the others.
      console.error('live subscriber failed', e)
    }
  }

  /** The stream URL the current subscribers need. */
  function wantedUrl(): string {
    if (allMetrics.size > 0 || byMetric.size === 0) return streamUrl(null)
    return streamUrl([...byMetric.keys()].sort())
  }

  function queueReconcile(): void {
    // Many panels subscribe in the same tick when a page mounts: open one connection for all.
    if (reconcileQueued) return
    reconcileQueued = true
    queueMicrotask(() => {
      reconcileQueued = false
      reconcile()
    })
  }

  function reconcile(): void {
    // While backing off after a refused connection, the retry opens the wanted URL itself.
    if (!enabled || retryTimer) return
    const wanted = wantedUrl()
    if (source && url.value === wanted) return
    open(wanted)
  }

  function open(target: string): void {
    close()
    if (state.value !== 'live') state.value = 'reconnecting'
    const es = new EventSource(target, { withCredentials: false })
    source = es
    url.value = target
    es.onopen = () => {
      if (source !== es) return
      retryDelay = MIN_RETRY_MS
      state.value = 'live'
    }
    const onSample = (ev: MessageEvent) => {
      if (source !== es) return
      const sample = parseSample(ev.data as string)
      if (sample) dispatch(sample)
    }
    es.addEventListener('sample', onSample as EventListener)
    es.onmessage = onSample
    es.onerror = () => {
      if (source !== es) return
      state.value = 'reconnecting'
      // CONNECTING: the browser retries by itself and sends Last-Event-ID.
      // CLOSED: it gave up (an HTTP error such as 401); retry ourselves after checking the session.
      if (es.readyState === EventSource.CLOSED) {
        close()
        scheduleRetry()
      }
    }
  }

  function scheduleRetry(): void {
    if (!enabled || retryTimer) return
    const delay = retryDelay
    retryDelay = Math.min(retryDelay * 2, MAX_RETRY_MS)
    retryTimer = setTimeout(async () => {
      retryTimer = null
      if (!enabled) return
      const session = await api.getSession().catch(() => undefined)
      if (!enabled) return
      if (session === null) {
        stop()
        notifyUnauthorized()
        return
      }
      open(wantedUrl())
    }, delay)
  }

  function close(): void {
    if (source) {
      source.onopen = source.onerror = source.onmessage = null
      source.close()
      source = null
    }
    url.value = null
  }

  /** Connect (when logged in). */
  function start(): void {
    enabled = true
    if (subscriberCount() > 0) return reconcile()
    // Nobody listens yet: the page that is loading will most likely subscribe in a moment,
    // so wait briefly rather than open an all-metrics stream only to replace it.
    idleTimer ??= setTimeout(() => {
      idleTimer = null
      reconcile()
    }, IDLE_OPEN_MS)
  }

  /** Disconnect (on logout); subscriptions stay and resume on the next start. */
  function stop(): void {
    enabled = false
    if (idleTimer) clearTimeout(idleTimer)
    idleTimer = null
    if (retryTimer) clearTimeout(retryTimer)
    retryTimer = null
    retryDelay = MIN_RETRY_MS
    close()
    state.value = 'offline'
  }

  function subscriberCount(): number {
    const subs = new Set(allMetrics)
    for (const set of byMetric.values()) for (const s of set) subs.add(s)
    return subs.size
  }

  return { state, url, subscribe, start, stop, subscriberCount, dispatch }
})
