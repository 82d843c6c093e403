import { afterEach, describe, expect, it, vi } from 'vitest'
import { nextTick, ref } from 'vue'
import { mockFetch } from '@/test/fakes'
import { useLabelValues, useMetricNames } from './useMetricCatalog'

afterEach(() => vi.unstubAllGlobals())

const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0))
}

/** A browser's requestIdleCallback that the test runs by hand. */
function idleQueue() {
  const queue: (() => void)[] = []
  vi.stubGlobal('requestIdleCallback', (cb: () => void) => queue.push(cb))
  return { run: () => queue.splice(0).forEach((cb) => cb()), size: () => queue.length }
}

describe('the pickers’ catalog', () => {
  it('fetches the metric names and a metric’s label values when the page is idle, not before', async () => {
    const idle = idleQueue()
    const fetch = mockFetch({
      'GET /api/v1/metrics': { body: { metrics: ['mem', 'cpu'] } },
      'GET /api/v1/series': { body: { series: [{ labels: { host: 'a' } }, { labels: { host: 'b' } }] } },
    })
    const names = useMetricNames()
    const metric = ref('cpu')
    const labels = useLabelValues(metric)
    await flush()
    expect(fetch).not.toHaveBeenCalled()
    expect(names.loading.value).toBe(true)
    expect(labels.loading.value).toBe(true)

    idle.run()
    await flush()
    expect(names.names.value).toEqual(['cpu', 'mem'])
    expect(labels.values.value).toEqual([{ key: 'host', values: ['a', 'b'] }])

    // Another metric afterwards loads at once.
    metric.value = 'mem'
    await nextTick()
    await flush()
    expect(idle.size()).toBe(0)
    expect(fetch.mock.calls.filter((c) => String(c[0]).includes('/series')).length).toBe(2)
  })
})
