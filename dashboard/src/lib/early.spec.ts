import { afterEach, describe, expect, it, vi } from 'vitest'
import { api } from '@/api/client'
import { mockFetch } from '@/test/fakes'
import { earlyUrls, queryOf, startEarly, takeEarlySession } from './early'
import { prefetchQuery, takePrefetched } from './prefetch'
import { dropStarted, GET_INIT, startRequests } from './started'

const session = { tenant: 'default', scopes: ['read'] }
const answer = { metric: 'cpu', resolution: 'raw', series: [] }

afterEach(() => {
  dropStarted()
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

  it('are the URLs the page’s first script starts, with what the app sends', () => {
    const where = { pathname: '/explorer', search: '?metric=cpu%20usage&match=host%3Dweb-1%2Cdc%3Dx&agg=max&range=1h' }
    const fetch = mockFetch({ 'GET /api/v1/session': { body: session }, 'GET /api/v1/query': { body: answer } })
    startEarly(where, 1_000_000)
    expect(fetch.mock.calls.map((c) => String(c[0]))).toEqual(earlyUrls(where, 1_000_000))
    for (const [, init] of fetch.mock.calls) {
      expect(init).toMatchObject({ method: 'GET', headers: GET_INIT.headers, credentials: GET_INIT.credentials })
    }
    expect(earlyUrls({ pathname: '/alerts', search: '?metric=cpu' }, 5)).toEqual(['/api/v1/session'])
    expect(earlyUrls({ pathname: '/explorer', search: '' }, 5)).toEqual(['/api/v1/session'])
  })

  it('take over what the first script started, at its time, and ask nothing again', async () => {
    const where = { pathname: '/explorer', search: '?metric=cpu&range=live' }
    const started = mockFetch({ 'GET /api/v1/session': { body: session }, 'GET /api/v1/query': { body: answer } })
    startRequests([...earlyUrls(where, 1_000_000), '/api/v1/series?metric=unused'], 1_000_000)
    expect(started).toHaveBeenCalledTimes(3)

    const fetch = mockFetch({})
    startEarly(where)
    expect(fetch).not.toHaveBeenCalled()
    expect(await takeEarlySession()).toEqual(session)
    const taken = takePrefetched({ metric: 'cpu', range: { key: 'live' } }, 1_000_500)
    expect(taken?.range).toMatchObject({ from: 1_000_000 - 900_000, to: 1_000_000 })
    expect(await taken?.result).toEqual(answer)

    // What nobody took is dropped: a later request of that URL asks the server.
    await expect(api.series('unused')).rejects.toThrow()
    expect(fetch).toHaveBeenCalledTimes(1)
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
