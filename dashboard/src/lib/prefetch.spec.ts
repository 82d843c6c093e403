import { afterEach, describe, expect, it, vi } from 'vitest'
import { setUnauthorizedHandler } from '@/api/client'
import { mockFetch } from '@/test/fakes'
import { PREFETCH_MAX_AGE_MS, prefetchQuery, takePrefetched } from './prefetch'

const answer = { metric: 'cpu', resolution: 'raw', series: [{ labels: { host: 'a' }, points: [[1, 2]] }] }

afterEach(() => {
  vi.unstubAllGlobals()
  // Leave nothing behind for the next test.
  takePrefetched({ metric: 'cpu', range: { key: 'live' } })
})

describe('prefetched first query', () => {
  it('is taken once by the same query, whatever the order of its labels', async () => {
    const fetch = mockFetch({ 'GET /api/v1/query': { body: answer } })
    prefetchQuery({ metric: 'cpu', match: { host: 'a', dc: 'x' }, range: { key: '1h' } }, 1_000_000)
    expect(fetch).toHaveBeenCalledTimes(1)
    const url = new URL(String(fetch.mock.calls[0]![0]), 'http://localhost')
    expect(url.searchParams.get('from')).toBe(String(1_000_000 - 3_600_000))
    expect(url.searchParams.get('step')).toBe('10s')

    const got = takePrefetched({ metric: 'cpu', match: { dc: 'x', host: 'a' }, agg: 'avg', range: { key: '1h' } }, 1_000_500)
    expect(got?.range.to).toBe(1_000_000)
    expect(await got?.result).toEqual(answer)
    expect(takePrefetched({ metric: 'cpu', match: { dc: 'x', host: 'a' }, range: { key: '1h' } }, 1_000_600)).toBeNull()
  })

  it('is not taken by another query, and not when it is too old', () => {
    mockFetch({ 'GET /api/v1/query': { body: answer } })
    prefetchQuery({ metric: 'cpu', range: { key: 'live' } }, 0)
    expect(takePrefetched({ metric: 'mem', range: { key: 'live' } }, 1)).toBeNull()
    expect(takePrefetched({ metric: 'cpu', agg: 'max', range: { key: 'live' } }, 1)).toBeNull()
    expect(takePrefetched({ metric: 'cpu', range: { key: 'live' } }, PREFETCH_MAX_AGE_MS + 1)).toBeNull()
  })

  it('leaves a 401 to the session check instead of sending the user to the login page', async () => {
    mockFetch({ 'GET /api/v1/query': { status: 401, body: { title: 'Unauthorized' } } })
    const onUnauthorized = vi.fn()
    setUnauthorizedHandler(onUnauthorized)
    prefetchQuery({ metric: 'cpu', range: { key: 'live' } }, 0)
    const got = takePrefetched({ metric: 'cpu', range: { key: 'live' } }, 1)
    await expect(got?.result).rejects.toMatchObject({ status: 401 })
    expect(onUnauthorized).not.toHaveBeenCalled()
  })

  it('does nothing without a metric', () => {
    const fetch = mockFetch({})
    prefetchQuery({ metric: '', range: { key: 'live' } })
    expect(fetch).not.toHaveBeenCalled()
  })
})
