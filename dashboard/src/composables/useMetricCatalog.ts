/** Metric names and, per metric, the label values of its series — for pickers and filters. */
import { computed, ref, watch, type Ref } from 'vue'
import { api } from '@/api/client'
import type { SeriesInfo } from '@/api/types'
import { errorText } from '@/lib/format'
import { whenIdle } from '@/lib/idle'

const names = ref<string[]>([])
const namesLoading = ref(false)
const namesError = ref<string | null>(null)
let namesFetchedAt = 0
let namesFetching: Promise<void> | null = null
const NAMES_TTL_MS = 30_000

async function fetchNames(): Promise<void> {
  namesLoading.value = true
  namesError.value = null
  try {
    names.value = [...(await api.metrics())].sort()
    namesFetchedAt = Date.now()
  } catch (e) {
    namesError.value = errorText(e)
  } finally {
    namesLoading.value = false
  }
}

/**
 * The tenant's metric names, shared by every picker on the page and refreshed at most every 30 s.
 * A picker's first load waits for an idle moment (`whenIdle`): a chart on the same page is drawn
 * first.
 */
export function useMetricNames() {
  function refresh(force = false): Promise<void> {
    if (namesFetching) return namesFetching
    if (!force && Date.now() - namesFetchedAt < NAMES_TTL_MS) return Promise.resolve()
    namesFetching = fetchNames().finally(() => (namesFetching = null))
    return namesFetching
  }
  if (!namesFetching && Date.now() - namesFetchedAt >= NAMES_TTL_MS) {
    namesLoading.value = true
    whenIdle(() => void refresh())
  }
  return { names, loading: namesLoading, error: namesError, refresh }
}

/**
 * Distinct values of each label key across the series of `metric`. The first load waits for an
 * idle moment (`whenIdle`), later metrics load at once.
 */
export function useLabelValues(metric: Ref<string>) {
  const series = ref<SeriesInfo[]>([])
  const loading = ref(false)
  const error = ref<string | null>(null)
  let seq = 0
  let first = true

  watch(
    metric,
    async (m) => {
      const mine = ++seq
      series.value = []
      error.value = null
      if (!m) return
      loading.value = true
      if (first) {
        first = false
        await new Promise<void>((resolve) => whenIdle(resolve))
        if (mine !== seq) return
      }
      try {
        const res = await api.series(m)
        if (mine === seq) series.value = res.series
      } catch (e) {
        if (mine === seq) error.value = errorText(e)
      } finally {
        if (mine === seq) loading.value = false
      }
    },
    { immediate: true },
  )

  const values = computed(() => {
    const out = new Map<string, Set<string>>()
    for (const s of series.value) {
      for (const [k, v] of Object.entries(s.labels)) {
        let set = out.get(k)
        if (!set) out.set(k, (set = new Set()))
        set.add(v)
      }
    }
    return [...out.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([key, set]) => ({ key, values: [...set].sort() }))
  })

  return { series, values, loading, error }
}
