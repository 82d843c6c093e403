/**
 * The page's single live connection. Panels subscribe with a filter; the store keeps ONE
 * EventSource whose `metric=` list is the union of what subscribers want (every metric when
 * any subscriber, or none, asks for all) and hands each sample to the subscribers it matches.
 * Label matching happens here, so panels with different filters share one connection.
 *
 * Nothing is lost across reconnects: the browser resumes with `Last-Event-ID`, and when the
 * store itself opens a new connection (other metrics wanted, or a retry after an HTTP error) it
 * passes the last id it saw as `last_event_id`. The server then sends what was missed first;
 * when it cannot (the gap is too large, or this client fell behind), it sends `event: reset`
 * and subscribers reload their data through the query API.
 *
 * When the stream cannot stay open (a proxy that cuts it, or buffers it so nothing arrives:
 * three connections in a row are answered and then end before any event, or a new one brings
 * no `ready` within 5 s without any error), 
 * the store falls back to polling: state `polling`, every subscriber reloads through the query
 * API every 10 s, and once a minute a new stream is tried; its first event brings back `live`.
 */
import { defineStore } from 'pinia'
import { ref } from 'vue'
import { api, notifyUnauthorized, streamUrl } from '@/api/client'
import type { Labels, LiveSample } from '@/api/types'
import { matchesLabels } from '@/lib/labels'

export type LiveState = 'live' | 'reconnecting' | 'polling' | 'offline'

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
  onReset: (() => void) | undefined
}

const MIN_RETRY_MS = 1000
const MAX_RETRY_MS = 30_000
const IDLE_OPEN_MS = 300
/** Resets that arrive closer together than this cause one reload, not one each. */
const RESET_COALESCE_MS = 1000
/** A new stream (no id to resume from) sends `ready` at once; nothing by then = held back. */
export const READY_TIMEOUT_MS = 5000
/** Connections in a row that end (or bring nothing) before any event: then poll instead. */
export const FAILED_ATTEMPTS_BEFORE_POLLING = 3
/** How often subscribers reload while polling. */
export const POLL_MS = 10_000
/** How often a stream is tried again while polling. */
export const PROBE_MS = 60_000
/** A connection open this long has not failed, even if it brought no event (a quiet metric). */
const STABLE_MS = 60_000

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

/** `url` resuming after event `id` (the server treats it like a `Last-Event-ID` header). */
export function withLastEventId(url: string, id: string | null): string {
  if (!id) return url
  return `${url}${url.includes('?') ? '&' : '?'}last_event_id=${encodeURIComponent(id)}`
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
  /** The id of the last event received, sent again when the store opens a new connection. */
  let lastEventId: string | null = null
  let resetTimer: ReturnType<typeof setTimeout> | null = null
  let lastResetAt = -Infinity
  /** Resets delivered to subscribers (for the header and tests). */
  const resets = ref(0)
  /** Connections in a row that failed before bringing any event. */
  let failedAttempts = 0
  /**
   * The current attempt: whether it was answered (`onopen`), brought an event, or failed to
   * connect at all, and when it began. A server that is down fails to connect: that is
   * reconnecting, never a reason to poll.
   */
  let connected = false
  let gotEvent = false
  let errored = false
  let openedAt = 0
  let readyTimer: ReturnType<typeof setTimeout> | null = null
  let pollTimer: ReturnType<typeof setInterval> | null = null
  let probeTimer: ReturnType<typeof setTimeout> | null = null

  /**
   * `handler` gets every matching sample; `onReset`, when the stream could not deliver
   * everything since the subscriber's data was loaded (reload it through the query API).
   */
  function subscribe(filter: LiveFilter, handler: SampleHandler, onReset?: () => void): () => void {
    const sub: Subscription = {
      metrics: [...new Set(filter.metrics ?? [])],
      match: filter.match && Object.keys(filter.match).length ? { ...filter.match } : undefined,
      handler,
      onReset,
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

  function allSubscriptions(): Set<Subscription> {
    const subs = new Set(allMetrics)
    for (const set of byMetric.values()) for (const s of set) subs.add(s)
    return subs
  }

  /** Tell every subscriber to reload, at most once per RESET_COALESCE_MS. */
  function reset(): void {
    if (resetTimer) return
    const wait = Math.max(0, lastResetAt + RESET_COALESCE_MS - Date.now())
    resetTimer = setTimeout(() => {
      resetTimer = null
      lastResetAt = Date.now()
      resets.value++
      for (const sub of allSubscriptions()) {
        try {
          sub.onReset?.()
        } catch (e) {
          console.error('live subscriber failed to reload', e)
        }
      }
    }, wait)
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
    // While backing off after a refused connection, the retry opens the wanted URL itself;
    // while polling, the next probe does.
    if (!enabled || retryTimer || state.value === 'polling') return
    const wanted = wantedUrl()
    if (source && url.value === wanted) return
    open(wanted)
  }

  function open(target: string): void {
    close()
    const polling = state.value === 'polling'
    if (state.value !== 'live' && !polling) state.value = 'reconnecting'
    const es = new EventSource(withLastEventId(target, lastEventId), { withCredentials: false })
    source = es
    url.value = target
    newAttempt()
    if (lastEventId === null) {
      // A new stream answers `ready` at once; a proxy that buffers it holds that (and even the
      // answer's headers) back, without any error.
      readyTimer = setTimeout(() => {
        readyTimer = null
        if (source === es && !gotEvent && !errored) attemptFailed(true)
      }, READY_TIMEOUT_MS)
    }
    es.onopen = () => {
      if (source !== es) return
      connected = true
      retryDelay = MIN_RETRY_MS
      // While polling, only an event proves that the stream gets through.
      if (state.value !== 'polling') state.value = 'live'
    }
    const onSample = (ev: MessageEvent) => {
      if (source !== es) return
      eventArrived()
      if (ev.lastEventId) lastEventId = ev.lastEventId
      const sample = parseSample(ev.data as string)
      if (sample) dispatch(sample)
    }
    const onReset = (ev: MessageEvent) => {
      if (source !== es) return
      eventArrived()
      if (ev.lastEventId) lastEventId = ev.lastEventId
      reset()
    }
    es.addEventListener('sample', onSample as EventListener)
    es.addEventListener('reset', onReset as EventListener)
    // Where a new stream starts: resuming from it loses nothing even before the first sample.
    es.addEventListener('ready', ((ev: MessageEvent) => {
      if (source !== es) return
      eventArrived()
      if (ev.lastEventId) lastEventId = ev.lastEventId
    }) as EventListener)
    es.onmessage = onSample
    es.onerror = () => {
      if (source !== es) return
      // Answered, then ended before any event (and soon): something between cuts the stream.
      if (connected && !gotEvent && Date.now() - openedAt < STABLE_MS) {
        attemptFailed(false)
        return
      }
      newAttempt()
      errored = true
      state.value = 'reconnecting'
      // CONNECTING: the browser retries by itself and sends Last-Event-ID.
      // CLOSED: it gave up (an HTTP error such as 401); retry ourselves after checking the session.
      if (es.readyState === EventSource.CLOSED) {
        close()
        scheduleRetry()
      }
    }
  }

  /** The current connection brought an event: the stream gets through. */
  function eventArrived(): void {
    if (gotEvent) return
    gotEvent = true
    failedAttempts = 0
    if (readyTimer) clearTimeout(readyTimer)
    readyTimer = null
    if (state.value === 'polling') {
      // A probe got through: live again, and everything reloads once (polling data is older).
      clearPolling()
      state.value = 'live'
      reset()
    } else {
      state.value = 'live'
    }
  }

  /**
   * The current connection ended, or brought nothing in time (`held`: it is still pending, e.g.
   * a proxy holds even its headers back), before any event.
   */
  function attemptFailed(held: boolean): void {
    if (state.value === 'polling') {
      // A probe that did not get through: try again later.
      close()
      probeTimer ??= setTimeout(probe, PROBE_MS)
      return
    }
    failedAttempts++
    if (failedAttempts >= FAILED_ATTEMPTS_BEFORE_POLLING) return startPolling()
    state.value = 'reconnecting'
    const es = source
    // The browser retries a dropped connection by itself; a closed or held one is reopened.
    if (held || (es && es.readyState !== EventSource.CONNECTING)) {
      close()
      scheduleRetry()
    } else {
      newAttempt()
    }
  }

  function newAttempt(): void {
    connected = false
    gotEvent = false
    errored = false
    openedAt = Date.now()
  }

  function startPolling(): void {
    close()
    if (retryTimer) clearTimeout(retryTimer)
    retryTimer = null
    state.value = 'polling'
    // A stream opened later starts afresh (with `ready`): the reloads cover what it missed.
    lastEventId = null
    reset()
    pollTimer = setInterval(reset, POLL_MS)
    probeTimer = setTimeout(probe, PROBE_MS)
  }

  function probe(): void {
    probeTimer = null
    if (!enabled || state.value !== 'polling') return
    open(wantedUrl())
  }

  function clearPolling(): void {
    if (pollTimer) clearInterval(pollTimer)
    pollTimer = null
    if (probeTimer) clearTimeout(probeTimer)
    probeTimer = null
    failedAttempts = 0
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
    if (readyTimer) clearTimeout(readyTimer)
    readyTimer = null
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
    if (resetTimer) clearTimeout(resetTimer)
    resetTimer = null
    // The next session (maybe another tenant's) starts afresh; its pages load their data.
    lastEventId = null
    if (retryTimer) clearTimeout(retryTimer)
    retryTimer = null
    retryDelay = MIN_RETRY_MS
    clearPolling()
    close()
    state.value = 'offline'
  }

  function subscriberCount(): number {
    return allSubscriptions().size
  }

  return { state, url, resets, subscribe, start, stop, subscriberCount, dispatch }
})
