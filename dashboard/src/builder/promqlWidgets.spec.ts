import { describe, expect, it, vi, beforeEach } from 'vitest'
import { mount } from '@vue/test-utils'
import { nextTick, ref, shallowRef } from 'vue'
import type { Labels, Panel } from '@/api/types'

// The PromQL data source, as the test sets it; the metric one stays empty.
const prom = {
  data: shallowRef<(number | null)[][]>([[]]),
  labels: shallowRef<Labels[]>([]),
  loading: ref(false),
  error: ref<string | null>(null),
}
const promParams: unknown[] = []
vi.mock('@/composables/usePromSeries', () => ({
  usePromSeries: (p: () => unknown) => {
    promParams.push(p)
    return { ...prom, xRange: shallowRef(null), truncated: ref(false), isLive: ref(false), reload: () => {} }
  },
}))
vi.mock('@/composables/useMetricSeries', () => ({
  useMetricSeries: () => ({
    data: shallowRef([[]]), labels: shallowRef([]), loading: ref(false), error: ref(null),
    xRange: shallowRef(null), resolution: ref(null), truncated: ref(false), isLive: ref(false),
  }),
}))

// uPlot needs a real browser: the editor's preview is not part of this spec.
vi.mock('@/builder/PanelWidget.vue', () => ({ default: { name: 'PanelWidget', render: () => null } }))

const { default: StatWidget } = await import('./StatWidget.vue')
const { default: TopNWidget } = await import('./TopNWidget.vue')
const { default: PanelEditor } = await import('@/components/PanelEditor.vue')

const panel = (p: Partial<Panel> = {}): Panel => ({
  id: 'p', title: 'CPU', metric: '', match: {}, agg: 'avg', unit: '%', thresholds: [],
  promql: 'avg(rate(cpu_seconds_total[1m])) * 100', ...p,
})
const range = { key: '1h' as const }

beforeEach(() => {
  prom.data.value = [[]]
  prom.labels.value = []
  prom.loading.value = false
  prom.error.value = null
  promParams.length = 0
})

describe('widgets with a PromQL query', () => {
  it('a stat shows the newest value of the PromQL series', async () => {
    prom.labels.value = [{}]
    prom.data.value = [[1, 2], [10, 42.5]]
    const w = mount(StatWidget, { props: { panel: panel(), range } })
    await nextTick()
    expect(w.find('[data-testid="stat-value"]').text()).toContain('42.5')
    const p = (promParams[0] as () => { promql: string } | null)()
    expect(p?.promql).toBe('avg(rate(cpu_seconds_total[1m])) * 100')
  })

  it("shows the server's error", async () => {
    prom.error.value = 'invalid PromQL: unclosed left parenthesis'
    const w = mount(TopNWidget, { props: { panel: panel({ type: 'topn' }), range } })
    expect(w.text()).toContain('invalid PromQL: unclosed left parenthesis')
  })
})

describe('panel editor: Metric / PromQL', () => {
  it('switches the first query to PromQL and saves the text', async () => {
    const w = mount(PanelEditor, {
      props: { variables: { host: 'a' } },
      global: { stubs: { PanelWidget: true, MetricCombo: true, LabelFilters: true } },
    })
    expect(w.find('[data-testid="panel-promql"]').exists()).toBe(false)
    await w.find('[data-testid="query-mode-promql"]').setValue(true)
    const ta = w.find('[data-testid="panel-promql"]')
    expect(ta.exists()).toBe(true)
    await w.find('[data-testid="panel-save"]').trigger('submit')
    expect(w.text()).toContain('Write a PromQL query.')
    await ta.setValue(' sum(rate(cpu_seconds_total{host="$host"}[1m])) ')
    await w.find('form').trigger('submit')
    const saved = w.emitted('save')![0]![0] as Panel
    expect(saved.promql).toBe('sum(rate(cpu_seconds_total{host="$host"}[1m]))')
    await w.find('[data-testid="query-mode-metric"]').setValue(true)
    expect(w.find('[data-testid="panel-promql"]').exists()).toBe(false)
  })
})
