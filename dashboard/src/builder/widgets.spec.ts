import { describe, expect, it, vi, beforeEach } from 'vitest'
import { mount } from '@vue/test-utils'
import { ref, shallowRef } from 'vue'
import type { Labels, Panel } from '@/api/types'

// The widgets' data source, as the test sets it.
const state = {
  data: shallowRef<(number | null)[][]>([[]]),
  labels: shallowRef<Labels[]>([]),
  loading: ref(false),
  error: ref<string | null>(null),
}
vi.mock('@/composables/useMetricSeries', () => ({
  useMetricSeries: () => ({ ...state, xRange: shallowRef(null), resolution: ref(null), truncated: ref(false), isLive: ref(true) }),
}))

const { default: StatWidget } = await import('./StatWidget.vue')
const { default: GaugeWidget } = await import('./GaugeWidget.vue')
const { default: TopNWidget } = await import('./TopNWidget.vue')

const panel = (p: Partial<Panel> = {}): Panel => ({
  id: 'p', title: 'CPU', metric: 'cpu.usage', match: {}, agg: 'avg', unit: '%',
  thresholds: [{ value: 80, color: 'rgb(245, 158, 11)' }, { value: 95, color: 'rgb(239, 68, 68)' }], ...p,
})
const range = { key: 'live' as const }

beforeEach(() => {
  state.data.value = [[]]
  state.labels.value = []
  state.loading.value = false
  state.error.value = null
})

describe('widgets', () => {
  it('stat: the newest value with its unit, coloured by the threshold it reached, and a sparkline', () => {
    state.data.value = [[1, 2, 3], [50, 90, null]]
    state.labels.value = [{ host: 'a' }]
    const w = mount(StatWidget, { props: { panel: panel(), range } })
    expect(w.get('[data-testid="stat-value"]').text()).toBe('90 %')
    expect(w.get('[data-testid="stat-value"]').attributes('style')).toContain('rgb(245, 158, 11)')
    expect(w.find('polyline').attributes('points')).toBeTruthy()
  })

  it('stat: loading, error and empty states', async () => {
    state.loading.value = true
    const w = mount(StatWidget, { props: { panel: panel(), range } })
    expect(w.find('[data-testid="state-loading"]').exists()).toBe(true)
    state.loading.value = false
    state.error.value = 'boom'
    await w.vm.$nextTick()
    expect(w.get('[data-testid="state-error"]').text()).toContain('boom')
    state.error.value = null
    await w.vm.$nextTick()
    expect(w.find('[data-testid="state-empty"]').exists()).toBe(true)
  })

  it('gauge: the arc is as long as the value is far between min and max', () => {
    state.data.value = [[1], [25]]
    state.labels.value = [{}]
    const w = mount(GaugeWidget, { props: { panel: panel({ min: 0, max: 50 }), range } })
    const arc = w.findAll('path')[1]!
    const [on, all] = arc.attributes('stroke-dasharray')!.split(' ').map(Number)
    expect(on! / all!).toBeCloseTo(0.5)
    expect(w.text()).toContain('25 %')
  })

  it('top N: the largest newest values first, at most N rows', () => {
    state.data.value = [[1, 2], [1, 5], [3, 9], [null, 2]]
    state.labels.value = [{ host: 'a' }, { host: 'b' }, { host: 'c' }]
    const w = mount(TopNWidget, { props: { panel: panel({ topN: 2 }), range } })
    const rows = w.findAll('[data-testid="topn-row"]')
    expect(rows.map((r) => r.text())).toEqual(['host=b9 %', 'host=a5 %'])
  })
})
