import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { flushPromises, mount } from '@vue/test-utils'
import MetricChart from './MetricChart.vue'
import { useLiveStore } from '@/stores/live'
import { FakeEventSource, mockFetch } from '@/test/fakes'
import { FakeUplot } from '@/test/uplotMock'
import { prefetchQuery } from '@/lib/prefetch'

vi.mock('uplot', async () => ({ default: (await import('@/test/uplotMock')).FakeUplot }))

const NOW = 1_700_000_000_000
const MIN = 60_000

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] })
  vi.setSystemTime(NOW)
  setActivePinia(createPinia())
  FakeEventSource.install()
  FakeUplot.instances = []
  vi.stubGlobal('ResizeObserver', class { observe() {} disconnect() {} })
})
afterEach(() => {
  vi.useRealTimers()
  vi.unstubAllGlobals()
})

function chart(wrapper: ReturnType<typeof mount>) {
  const el = wrapper.get('[data-testid="chart"]').element as HTMLElement
  return { points: Number(el.dataset.points), lastTs: Number(el.dataset.lastTs) }
}

describe('MetricChart', () => {
  it('live mode: loads the last 15 minutes raw, then appends streamed points without reloading', async () => {
    const fetch = mockFetch({
      'GET /api/v1/query': {
        body: {
          resolution: 'raw',
          series: [{ labels: { host: 'a' }, points: [[NOW - 10 * MIN, 1], [NOW - MIN, 2]] }],
        },
      },
    })
    const live = useLiveStore()
    live.start()
    const wrapper = mount(MetricChart, {
      props: { metric: 'cpu.usage', match: { host: 'a' }, range: { key: 'live' } },
    })
    await flushPromises()
    await vi.advanceTimersByTimeAsync(250)

    const q = new URL(String(fetch.mock.calls[0]![0]), 'http://x').searchParams
    expect(q.get('from')).toBe(String(NOW - 15 * MIN))
    expect(q.get('to')).toBe(String(NOW))
    expect(q.get('match')).toBe('host=a')
    expect(q.has('step')).toBe(false)
    expect(chart(wrapper)).toEqual({ points: 2, lastTs: NOW - MIN })

    const es = FakeEventSource.latest()
    expect(es.url).toBe('/api/v1/stream?metric=cpu.usage')
    es.open()
    es.sample({ metric: 'cpu.usage', labels: { host: 'a' }, ts: NOW + 1000, value: 3 })
    es.sample({ metric: 'cpu.usage', labels: { host: 'b' }, ts: NOW + 1000, value: 9 }) // filtered out
    await vi.advanceTimersByTimeAsync(250)
    expect(chart(wrapper)).toEqual({ points: 3, lastTs: NOW + 1000 })
    expect(fetch).toHaveBeenCalledTimes(1)

    // Six minutes on, the point from 10 minutes before start is outside the window.
    vi.setSystemTime(NOW + 6 * MIN)
    es.sample({ metric: 'cpu.usage', labels: { host: 'a' }, ts: NOW + 6 * MIN, value: 4 })
    await vi.advanceTimersByTimeAsync(250)
    expect(chart(wrapper)).toEqual({ points: 3, lastTs: NOW + 6 * MIN })
    expect(fetch).toHaveBeenCalledTimes(1)

    wrapper.unmount()
    expect(live.subscriberCount()).toBe(0)
  })

  it('live mode: takes the prefetched window, then reads only the gap before its subscription', async () => {
    const fetch = mockFetch({
      'GET /api/v1/query': (url) =>
        url.searchParams.get('from') === String(NOW - 15 * MIN)
          ? { body: { resolution: 'raw', series: [{ labels: { host: 'a' }, points: [[NOW - MIN, 1]] }] } }
          : { body: { resolution: 'raw', series: [{ labels: { host: 'a' }, points: [[NOW + 500, 2]] }] } },
    })
    const live = useLiveStore()
    live.start()
    // The router starts the query before the page's code has arrived.
    prefetchQuery({ metric: 'cpu.usage', match: { host: 'a' }, range: { key: 'live' } })
    vi.setSystemTime(NOW + 1000)
    const wrapper = mount(MetricChart, {
      props: { metric: 'cpu.usage', match: { host: 'a' }, range: { key: 'live' } },
    })
    await flushPromises()
    await vi.advanceTimersByTimeAsync(250)

    expect(fetch).toHaveBeenCalledTimes(2)
    const gap = new URL(String(fetch.mock.calls[1]![0]), 'http://x').searchParams
    expect(gap.get('from')).toBe(String(NOW))
    expect(Number(gap.get('to'))).toBeGreaterThanOrEqual(NOW + 1000)
    expect(chart(wrapper)).toEqual({ points: 2, lastTs: NOW + 500 })
    wrapper.unmount()
  })

  it('makes the plot once, with the first answer, not empty before it', async () => {
    mockFetch({
      'GET /api/v1/query': { body: { resolution: 'raw', series: [{ labels: { host: 'a' }, points: [[NOW - MIN, 1]] }] } },
    })
    const wrapper = mount(MetricChart, { props: { metric: 'cpu.usage', range: { key: '1h' } } })
    expect(wrapper.find('[data-testid="chart"]').exists()).toBe(false)
    await flushPromises()
    await vi.advanceTimersByTimeAsync(250)
    expect(chart(wrapper)).toEqual({ points: 1, lastTs: NOW - MIN })
    expect(FakeUplot.instances).toHaveLength(1)
    wrapper.unmount()
  })

  it('adds a line when a new series appears on the stream', async () => {
    mockFetch({
      'GET /api/v1/query': { body: { resolution: 'raw', series: [{ labels: { host: 'a' }, points: [[NOW - MIN, 1]] }] } },
    })
    useLiveStore().start()
    const wrapper = mount(MetricChart, { props: { metric: 'cpu.usage', range: { key: 'live' } } })
    await flushPromises()
    await vi.advanceTimersByTimeAsync(250)
    FakeEventSource.latest().sample({ metric: 'cpu.usage', labels: { host: 'b' }, ts: NOW, value: 5 })
    await vi.advanceTimersByTimeAsync(250)
    const u = FakeUplot.live()
    expect(u).toHaveLength(1)
    expect(u[0]!.series).toHaveLength(3)
    expect(chart(wrapper)).toEqual({ points: 2, lastTs: NOW })
  })

  it('a sample sent again when the stream resumes replaces its point; a reset reloads the window', async () => {
    let answer = [[NOW - 10 * MIN, 1], [NOW - MIN, 2]]
    const fetch = mockFetch({
      'GET /api/v1/query': () => ({ body: { resolution: 'raw', series: [{ labels: { host: 'a' }, points: answer }] } }),
    })
    useLiveStore().start()
    const wrapper = mount(MetricChart, { props: { metric: 'cpu.usage', range: { key: 'live' } } })
    await flushPromises()
    await vi.advanceTimersByTimeAsync(250)
    expect(chart(wrapper)).toEqual({ points: 2, lastTs: NOW - MIN })

    // The seam of a resume: the server may send again what the query already returned.
    const es = FakeEventSource.latest()
    es.open()
    es.sample({ metric: 'cpu.usage', labels: { host: 'a' }, ts: NOW - MIN, value: 2 }, '10')
    es.sample({ metric: 'cpu.usage', labels: { host: 'a' }, ts: NOW + 1000, value: 3 }, '11')
    es.sample({ metric: 'cpu.usage', labels: { host: 'a' }, ts: NOW + 1000, value: 3 }, '12')
    await vi.advanceTimersByTimeAsync(250)
    expect(chart(wrapper)).toEqual({ points: 3, lastTs: NOW + 1000 })
    expect(FakeUplot.live()[0]!.data[1]).toEqual([1, 2, 3])

    // A gap the server could not fill: the chart reads its window again and shows what is stored.
    answer = [[NOW - 10 * MIN, 1], [NOW - 5 * MIN, 7], [NOW - MIN, 2], [NOW + 1000, 3], [NOW + 2000, 4]]
    es.emit('reset', { reason: 'gap' }, '13')
    await vi.advanceTimersByTimeAsync(0)
    await flushPromises()
    await vi.advanceTimersByTimeAsync(250)
    expect(fetch).toHaveBeenCalledTimes(2)
    expect(chart(wrapper)).toEqual({ points: 5, lastTs: NOW + 2000 })
    expect(FakeEventSource.instances).toHaveLength(1)
  })

  it('longer ranges ask for a step so the server can use rollups, and do not stream', async () => {
    const fetch = mockFetch({
      'GET /api/v1/query': { body: { resolution: '5m', series: [{ labels: {}, points: [[NOW - 60 * MIN, 1]] }] } },
    })
    useLiveStore().start()
    const wrapper = mount(MetricChart, { props: { metric: 'cpu.usage', agg: 'max', range: { key: '24h' } } })
    await flushPromises()
    await vi.advanceTimersByTimeAsync(250)
    const q = new URL(String(fetch.mock.calls[0]![0]), 'http://x').searchParams
    expect(q.get('step')).toBe('300s')
    expect(q.get('agg')).toBe('max')
    expect(Number(q.get('to')) - Number(q.get('from'))).toBe(24 * 60 * MIN)
    expect(useLiveStore().subscriberCount()).toBe(0)
    expect(wrapper.get('[data-testid="resolution"]').text()).toContain('5m')
  })

  it('shows the empty and error states', async () => {
    mockFetch({ 'GET /api/v1/query': { body: { resolution: 'raw', series: [] } } })
    const empty = mount(MetricChart, { props: { metric: 'cpu.usage', range: { key: '1h' } } })
    await flushPromises()
    expect(empty.find('[data-testid="state-empty"]').exists()).toBe(true)

    mockFetch({ 'GET /api/v1/query': { status: 400, body: { title: 'Bad Request', detail: 'unknown metric' } } })
    const failed = mount(MetricChart, { props: { metric: 'nope', range: { key: '1h' } } })
    await flushPromises()
    expect(failed.get('[data-testid="state-error"]').text()).toContain('unknown metric')
  })
})
