import { afterEach, describe, expect, it, vi } from 'vitest'
import { mockFetch } from '@/test/fakes'
import { queryOf, startEarly, takeEarlySession } from './early'
import { prefetchQuery, takePrefetched } from './prefetch'

const session = { tenant: 'default', scopes: ['read'] }
const answer = { metric: 'cpu', resolution: 'raw', series: [] }

afterEach(() => {
  vi.unstubAllGlobals()
  takeEarlySession()
  takePrefetched({ metric: 'cpu', range: { key: 'live' } })
})

const paths = (fetch: ReturnType<typeof mockFetch>) => fetch.mock.calls.map((c) => new URL(String(c[0]), 'http://x').pathname)

describe('the first page load’s early requests', () => {
  it('start the session check and, on the explorer, its query, which the router does not ask again', async () => {
    const fetch = mockFetch({ 'GET /api/v1/session': { body: session }, 'GET /api/v1/query': { body: answer } })
    startEarly({ pathname: '/explorer', search: '?metric=cpu&range=live' }, 1_000_000)
    expect(paths(fetch).sort()).toEqual(['/api/v1/query', '/api/v1/session'])

    // The router's prefetch of the same query a moment later keeps the running one.
    prefetchQuery({ metric: 'cpu', range: { key: 'live' } }, 1_000_150)
    expect(fetch).toHaveBeenCalledTimes(2)
    expect(await takePrefetched({ metric: 'cpu', range: { key: 'live' } }, 1_000_200)?.result).toEqual(answer)

    expect(await takeEarlySession()).toEqual(session)
    expect(takeEarlySession()).toBeNull()
  })

  it('start only the session check elsewhere', () => {
    const fetch = mockFetch({ 'GET /api/v1/session': { body: session } })
    startEarly({ pathname: '/dashboards', search: '?metric=cpu' })
    expect(paths(fetch)).toEqual(['/api/v1/session'])
  })

  it('read the query like the router: + is a space, a repeated key is a list', () => {
    expect(queryOf('?metric=a+b&match=host%3Dx&k=1&k=2')).toEqual({ metric: 'a b', match: 'host=x', k: ['1', '2'] })
    expect(queryOf('')).toEqual({})
  })

  it('a later prefetch of another query, or of the same one seconds later, asks again', () => {
    const fetch = mockFetch({ 'GET /api/v1/query': { body: answer } })
    prefetchQuery({ metric: 'cpu', range: { key: 'live' } }, 0)
    prefetchQuery({ metric: 'mem', range: { key: 'live' } }, 10)
    prefetchQuery({ metric: 'mem', range: { key: 'live' } }, 5_000)
    expect(fetch).toHaveBeenCalledTimes(3)
    takePrefetched({ metric: 'mem', range: { key: 'live' } }, 5_001)
  })
})
