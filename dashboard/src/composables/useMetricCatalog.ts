/** Metric names and, per metric, the label values of its series — for pickers and filters. */
import { computed, ref, watch, type Ref } from 'vue'
import { api } from '@/api/client'
import type { SeriesInfo } from '@/api/types'
import { errorText } from '@/lib/format'

const names = ref<string[]>([])
const namesLoading = ref(false)
const namesError = ref<string | null>(null)
let namesFetchedAt = 0
const NAMES_TTL_MS = 30_000

/** The tenant's metric names, shared by every picker on the page and refreshed at most every 30 s. */
export function useMetricNames() {
  async function refresh(force = false): Promise<void> {
    if (!force && Date.now() - namesFetchedAt < NAMES_TTL_MS) return
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
  void refresh()
  return { names, loading: namesLoading, error: namesError, refresh }
}

/** Distinct values of each label key across the series of `metric`. */
export function useLabelValues(metric: Ref<string>) {
  const series = ref<SeriesInfo[]>([])
  const loading = ref(false)
  const error = ref<string | null>(null)
  let seq = 0

  watch(
    metric,
    async (m) => {
      const mine = ++seq
      series.value = []
      error.value = null
      if (!m) return
      loading.value = true
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
