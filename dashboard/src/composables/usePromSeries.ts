/**
 * The data behind a PromQL panel: a `/prometheus/api/v1/query_range` over the range. In live
 * mode the window is read again every POLL_MS (not from the live stream, which carries raw
 * samples, not the results of an expression); polling pauses while the tab is hidden.
 * Returns the same refs as useMetricSeries, so the widgets can take either.
 */
import { onBeforeUnmount, ref, shallowRef, watch } from 'vue'
import { api } from '@/api/client'
import type { Labels } from '@/api/types'
import { alignSeries, bufferFromPoints, MAX_SERIES, type Aligned } from '@/lib/series'
import { resolveRange, type TimeRange } from '@/lib/timeRange'
import { errorText } from '@/lib/format'
import { promStep } from '@/builder/model'

export interface PromSeriesParams {
  promql: string
  range: TimeRange
}

export const POLL_MS = 10_000

export function usePromSeries(params: () => PromSeriesParams | null) {
  const data = shallowRef<Aligned>([[]])
  const labels = shallowRef<Labels[]>([])
  const loading = ref(false)
  const error = ref<string | null>(null)
  const truncated = ref(false)
  const isLive = ref(false)
  const xRange = shallowRef<[number, number] | null>(null)

  let abort: AbortController | null = null
  let timer: ReturnType<typeof setInterval> | null = null
  let labelsJson = '[]'

  function stop(): void {
    abort?.abort()
    abort = null
    if (timer) clearInterval(timer)
    timer = null
  }

  async function fetchWindow(p: PromSeriesParams): Promise<void> {
    abort?.abort()
    const controller = new AbortController()
    abort = controller
    const r = resolveRange(p.range, Date.now())
    isLive.value = r.live
    xRange.value = [r.from, r.to]
    try {
      const series = await api.promRange(p.promql, r.from, r.to, promStep(r.to - r.from), controller.signal)
      if (controller.signal.aborted) return
      truncated.value = series.length > MAX_SERIES
      const bufs = series.slice(0, MAX_SERIES).map((s) => bufferFromPoints(s.labels, s.points))
      const nextLabels = bufs.map((b) => b.labels)
      const json = JSON.stringify(nextLabels)
      if (json !== labelsJson) {
        labelsJson = json
        labels.value = nextLabels
      }
      data.value = alignSeries(bufs)
      error.value = null
    } catch (e) {
      if (controller.signal.aborted) return
      error.value = errorText(e)
    } finally {
      if (!controller.signal.aborted) loading.value = false
    }
  }

  function load(): void {
    stop()
    const p = params()
    error.value = null
    truncated.value = false
    labelsJson = '[]'
    labels.value = []
    data.value = [[]]
    if (!p || !p.promql.trim()) {
      isLive.value = false
      xRange.value = null
      loading.value = false
      return
    }
    loading.value = true
    void fetchWindow(p)
    if (p.range.key === 'live') {
      timer = setInterval(() => {
        if (typeof document !== 'undefined' && document.hidden) return
        const cur = params()
        if (cur && !loading.value) void fetchWindow(cur)
      }, POLL_MS)
    }
  }

  function onVisible(): void {
    // Back from a hidden tab: catch up at once rather than at the next tick.
    const p = params()
    if (!document.hidden && timer && p) void fetchWindow(p)
  }
  if (typeof document !== 'undefined') document.addEventListener('visibilitychange', onVisible)

  watch(() => JSON.stringify(params()), load, { immediate: true })
  onBeforeUnmount(() => {
    stop()
    if (typeof document !== 'undefined') document.removeEventListener('visibilitychange', onVisible)
  })

  return { data, labels, xRange, loading, error, truncated, isLive, reload: load }
}
