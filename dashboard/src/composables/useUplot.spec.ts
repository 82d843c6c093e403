import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { defineComponent, h, nextTick, ref, shallowRef } from 'vue'
import { mount } from '@vue/test-utils'
import type uPlot from 'uplot'
import { useUplot } from './useUplot'
import { buildChartOptions } from '@/lib/chartOptions'
import { FakeUplot } from '@/test/uplotMock'

vi.mock('uplot', async () => ({ default: (await import('@/test/uplotMock')).FakeUplot }))

let resizeCallbacks: (() => void)[] = []
class FakeResizeObserver {
  disconnected = false
  constructor(cb: () => void) {
    resizeCallbacks.push(cb)
  }
  observe(): void {}
  disconnect(): void {
    this.disconnected = true
  }
}

beforeEach(() => {
  FakeUplot.instances = []
  resizeCallbacks = []
  vi.stubGlobal('ResizeObserver', FakeResizeObserver)
})
afterEach(() => vi.unstubAllGlobals())

function harness(initial: uPlot.AlignedData, labels = ['a']) {
  const data = shallowRef<uPlot.AlignedData>(initial)
  const seriesLabels = ref(labels)
  const unit = ref('%')
  const Comp = defineComponent({
    setup() {
      const el = ref<HTMLElement | null>(null)
      useUplot(el, {
        options: () => buildChartOptions({ seriesLabels: seriesLabels.value, unit: unit.value }),
        data: () => data.value,
        height: 150,
      })
      return () => h('div', { ref: el, 'data-testid': 'chart' })
    },
  })
  const wrapper = mount(Comp, { attachTo: document.body })
  const el = () => wrapper.element as HTMLElement
  return { wrapper, data, seriesLabels, unit, el }
}

const frame = () => new Promise((r) => setTimeout(r, 30))

describe('useUplot', () => {
  it('creates one plot on mount, inside the element, with ms timestamps and the height', () => {
    const { el } = harness([[1000, 2000], [1, 2]])
    expect(FakeUplot.instances).toHaveLength(1)
    const u = FakeUplot.instances[0]!
    expect(u.target).toBe(el())
    expect(u.height).toBe(150)
    expect(u.opts.ms).toBe(1)
    expect(el().dataset.points).toBe('2')
    expect(el().dataset.lastTs).toBe('2000')
  })

  it('calls setData on data changes and updates data-points / data-last-ts', async () => {
    const { data, el } = harness([[1000], [1]])
    data.value = [[1000, 2000, 3000], [1, null, 3]]
    await nextTick()
    const u = FakeUplot.instances[0]!
    expect(FakeUplot.instances).toHaveLength(1)
    expect(u.setDataCalls).toBe(1)
    expect(u.data[0]).toEqual([1000, 2000, 3000])
    expect(el().dataset.points).toBe('2')
    expect(el().dataset.lastTs).toBe('3000')
  })

  it('rebuilds the plot when the set of series changes', async () => {
    const { data, seriesLabels, el } = harness([[1000], [1]])
    seriesLabels.value = ['a', 'b']
    data.value = [[1000, 2000], [1, 2], [null, 5]]
    await nextTick()
    expect(FakeUplot.instances).toHaveLength(2)
    expect(FakeUplot.instances[0]!.destroyed).toBe(true)
    expect(FakeUplot.live()).toHaveLength(1)
    expect(FakeUplot.live()[0]!.series).toHaveLength(3)
    expect(el().dataset.points).toBe('3')
  })

  it('rebuilds when other options change (unit)', async () => {
    const { unit } = harness([[1000], [1]])
    unit.value = 'ms'
    await nextTick()
    expect(FakeUplot.live()).toHaveLength(1)
    const axis = FakeUplot.live()[0]!.opts.axes![1]!
    expect(axis.label).toBe('ms')
  })

  it('resizes to the element width when it changes', async () => {
    const { el } = harness([[1000], [1]])
    Object.defineProperty(el(), 'clientWidth', { configurable: true, value: 480 })
    resizeCallbacks.forEach((cb) => cb())
    resizeCallbacks.forEach((cb) => cb()) // coalesced into one frame
    await frame()
    const u = FakeUplot.instances[0]!
    expect(u.sizes).toEqual([{ width: 480, height: 150 }])
  })

  it('destroys the plot and stops observing on unmount', () => {
    const { wrapper } = harness([[1000], [1]])
    wrapper.unmount()
    expect(FakeUplot.instances[0]!.destroyed).toBe(true)
  })

  it('reports an empty chart as 0 points and no timestamp', () => {
    const { el } = harness([[]], [])
    expect(el().dataset.points).toBe('0')
    expect(el().dataset.lastTs).toBe('')
  })
})
