/**
 * The series of one panel query, whether it is metric + filters (useMetricSeries, live
 * through the stream) or PromQL (usePromSeries, live by polling).
 */
import { computed } from 'vue'
import type { Aggregation, Labels, Panel } from '@/api/types'
import type { TimeRange } from '@/lib/timeRange'
import { useMetricSeries } from './useMetricSeries'
import { usePromSeries } from './usePromSeries'

export interface PanelSeriesParams {
  metric: string
  match?: Labels
  agg?: Aggregation
  promql?: string
  range: TimeRange
}

/** A panel's main query over `range`; `null` when it has neither a metric nor PromQL. */
export function panelQuery(panel: Panel, range: TimeRange): PanelSeriesParams | null {
  if (!panel.metric && !panel.promql) return null
  return { metric: panel.metric, match: panel.match, agg: panel.agg, promql: panel.promql, range }
}

export function usePanelSeries(params: () => PanelSeriesParams | null) {
  const isProm = (p: PanelSeriesParams | null): p is PanelSeriesParams & { promql: string } => !!p?.promql?.trim()
  const metric = useMetricSeries(() => {
    const p = params()
    return p && !isProm(p) && p.metric ? { metric: p.metric, match: p.match, agg: p.agg, range: p.range } : null
  })
  const prom = usePromSeries(() => {
    const p = params()
    return isProm(p) ? { promql: p.promql, range: p.range } : null
  })
  const use = computed(() => (isProm(params()) ? prom : metric))
  return {
    data: computed(() => use.value.data.value),
    labels: computed(() => use.value.labels.value),
    xRange: computed(() => use.value.xRange.value),
    loading: computed(() => use.value.loading.value),
    error: computed(() => use.value.error.value),
  }
}
