/**
 * The data behind one chart: a `/query` for the range, then — in live mode — samples from
 * the shared live stream appended in place (no reload), with points older than the live
 * window dropped. Repaints are throttled: at most one alignment per FLUSH_MS, and a sample
 * that arrives after a quiet spell is drawn at once (in the next task), not FLUSH_MS later.
 * A sample that is already there (same series and ts, e.g. sent again when the stream
 * resumes) replaces it; a reset from the stream reloads the window.
 */
import { onBeforeUnmount, ref, shallowRef, watch } from 'vue'
import { api } from '@/api/client'
import type { Aggregation, Labels, LiveSample, Resolution } from '@/api/types'
import { labelsKey } from '@/lib/labels'
import {
  alignSeries,
  bufferFromPoints,
  insertPoint,
  MAX_SERIES,
  trimBefore,
  type Aligned,
  type SeriesBuffer,
} from '@/lib/series'
import { LIVE_WINDOW_MS, resolveRange, type TimeRange } from '@/lib/timeRange'
import { useLiveStore } from '@/stores/live'
import { takePrefetched } from '@/lib/prefetch'
import { errorText } from '@/lib/format'

export interface MetricSeriesParams {
  metric: string
  match?: Labels
  agg?: Aggregation
  range: TimeRange
}

const FLUSH_MS = 200
/** Slide the live window even when no sample arrives. */
const SLIDE_MS = 5000

export function useMetricSeries(params: () => MetricSeriesParams | null) {
  const live = useLiveStore()
  const data = shallowRef<Aligned>([[]])
  /** Label sets in the order of `data`'s y arrays; replaced only when the set changes. */
  const labels = shallowRef<Labels[]>([])
  const loading = ref(false)
  const error = ref<string | null>(null)
  const resolution = ref<Resolution | null>(null)
  /** Series beyond MAX_SERIES were left out. */
  const truncated = ref(false)
  const isLive = ref(false)
  /** The window the chart should show: the requested range, or the sliding live window. */
  const xRange = shallowRef<[number, number] | null>(null)

  let buffers: SeriesBuffer[] = []
  let byKey = new Map<string, SeriesBuffer>()
  let unsubscribe: (() => void) | null = null
  let abort: AbortController | null = null
  let flushTimer: ReturnType<typeof setTimeout> | null = null
  let slideTimer: ReturnType<typeof setInterval> | null = null
  let seriesChanged = false
  let lastFlushAt = -Infinity

  function stop(): void {
    unsubscribe?.()
    unsubscribe = null
    abort?.abort()
    abort = null
    if (flushTimer) clearTimeout(flushTimer)
    flushTimer = null
    if (slideTimer) clearInterval(slideTimer)
    slideTimer = null
  }

  function flush(): void {
    flushTimer = null
    lastFlushAt = Date.now()
    if (isLive.value) {
      const now = Date.now()
      const minTs = now - LIVE_WINDOW_MS
      xRange.value = [minTs, now]
      for (const b of buffers) trimBefore(b, minTs)
      const kept = buffers.filter((b) => b.xs.length > 0)
      if (kept.length !== buffers.length) {
        buffers = kept
        byKey = new Map(kept.map((b) => [b.key, b]))
        seriesChanged = true
      }
    }
    if (seriesChanged) {
      labels.value = buffers.map((b) => b.labels)
      seriesChanged = false
    }
    data.value = alignSeries(buffers)
  }

  function scheduleFlush(): void {
    if (flushTimer) return
    // A zero wait still batches what arrives in the same burst of events.
    flushTimer = setTimeout(flush, Math.max(0, lastFlushAt + FLUSH_MS - Date.now()))
  }

  function append(s: LiveSample): void {
    const key = labelsKey(s.labels)
    let buf = byKey.get(key)
    if (!buf) {
      if (buffers.length >= MAX_SERIES) {
        truncated.value = true
        return
      }
      buf = { key, labels: s.labels, xs: [], ys: [] }
      buffers.push(buf)
      byKey.set(key, buf)
      seriesChanged = true
    }
    insertPoint(buf, s.ts, s.value)
    scheduleFlush()
  }

  async function load(): Promise<void> {
    stop()
    const p = params()
    buffers = []
    byKey = new Map()
    truncated.value = false
    error.value = null
    resolution.value = null
    if (!p || !p.metric) {
      isLive.value = false
      xRange.value = null
      loading.value = false
      seriesChanged = true
      flush()
      return
    }
    // The router may have started this very query while the page's code was loading.
    const prefetched = takePrefetched(p)
    const r = prefetched?.range ?? resolveRange(p.range, Date.now())
    isLive.value = r.live
    xRange.value = [r.from, r.to]
    loading.value = true
    const controller = new AbortController()
    abort = controller

    // Subscribe before querying so samples that arrive meanwhile are kept, then merged.
    let early: LiveSample[] | null = null
    if (r.live) {
      early = []
      unsubscribe = live.subscribe(
        { metrics: [p.metric], match: p.match },
        (s) => {
          if (early) early.push(s)
          else append(s)
        },
        // The stream could not deliver everything it missed: read the window again.
        () => void load(),
      )
    }
    const query = (from: number, to: number) =>
      api.query({ metric: p.metric, match: p.match, from, to, step: r.step, agg: p.agg }, controller.signal)
    try {
      const res = prefetched ? await prefetched.result.catch(() => query(r.from, r.to)) : await query(r.from, r.to)
      if (controller.signal.aborted) return
      truncated.value = res.series.length > MAX_SERIES
      buffers = res.series.slice(0, MAX_SERIES).map((s) => bufferFromPoints(s.labels, s.points))
      byKey = new Map(buffers.map((b) => [b.key, b]))
      resolution.value = res.resolution
    } catch (e) {
      if (controller.signal.aborted) return
      error.value = errorText(e)
    } finally {
      if (!controller.signal.aborted) loading.value = false
    }
    if (early) {
      for (const s of early) append(s)
      early = null
    }
    if (r.live) slideTimer = setInterval(scheduleFlush, SLIDE_MS)
    seriesChanged = true
    flush()
    // A prefetched live window ends before this chart subscribed: read the samples of that gap
    // (the same sample twice is kept once).
    if (prefetched && r.live && !error.value) {
      query(r.to, Date.now() + 1000)
        .then((res) => {
          if (controller.signal.aborted) return
          for (const s of res.series) for (const [ts, value] of s.points) append({ metric: p.metric, labels: s.labels, ts, value })
        })
        // The stream carries on; the gap stays as it was.
        .catch(() => undefined)
    }
  }

  // Compare by value: callers often pass fresh object literals that mean the same query.
  watch(() => JSON.stringify(params()), () => void load(), { immediate: true })
  onBeforeUnmount(stop)

  return { data, labels, xRange, loading, error, resolution, truncated, isLive, reload: load }
}
