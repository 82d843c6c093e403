import { afterEach, describe, expect, it, vi } from 'vitest'
import { api, ApiError, formatMatch, setUnauthorizedHandler, streamUrl } from './client'
import { mockFetch } from '@/test/fakes'

afterEach(() => {
  vi.unstubAllGlobals()
  setUnauthorizedHandler(() => {})
})

describe('api client', () => {
  it('returns parsed JSON and sends the cookie on same-origin calls', async () => {
    const fetch = mockFetch({ 'GET /api/v1/metrics': { body: { metrics: ['cpu.usage', 'mem.used'] } } })
    await expect(api.metrics()).resolves.toEqual(['cpu.usage', 'mem.used'])
    const [url, init] = fetch.mock.calls[0]!
    expect(url).toBe('/api/v1/metrics')
    expect(init?.credentials).toBe('same-origin')
  })

  it('encodes query parameters, including the match list', async () => {
    const fetch = mockFetch({
      'GET /api/v1/query': { body: { resolution: '1m', series: [{ labels: { host: 'a' }, points: [[1, 2]] }] } },
    })
    const res = await api.query({
      metric: 'cpu.usage',
      match: { host: 'a', region: 'eu' },
      from: 1000,
      to: 2000,
      step: '60s',
      agg: 'max',
    })
    expect(res.resolution).toBe('1m')
    const url = new URL(String(fetch.mock.calls[0]![0]), 'http://x')
    expect(Object.fromEntries(url.searchParams)).toEqual({
      metric: 'cpu.usage',
      from: '1000',
      to: '2000',
      match: 'host=a,region=eu',
      step: '60s',
      agg: 'max',
    })
  })

  it('turns problem+json into an ApiError with title, detail and field', async () => {
    mockFetch({
      'PUT /api/v1/dashboards/web': {
        status: 422,
        body: { type: 'about:blank', title: 'Invalid dashboard', detail: 'panel metric is empty', field: 'panels[0].metric' },
      },
    })
    const err = await api.saveDashboard({ name: 'web', title: 'Web', panels: [] }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ApiError)
    expect(err).toMatchObject({
      status: 422,
      title: 'Invalid dashboard',
      detail: 'panel metric is empty',
      field: 'panels[0].metric',
      message: 'panel metric is empty',
    })
  })

  it('falls back to the status line when the error body is not JSON', async () => {
    mockFetch({ 'GET /api/v1/metrics': { status: 502, body: '<html>bad gateway</html>', contentType: 'text/html' } })
    const err = (await api.metrics().catch((e: unknown) => e)) as ApiError
    expect(err.status).toBe(502)
    expect(err.detail).toBeUndefined()
    expect(err.message).toBeTruthy()
  })

  it('sends the user to login on a 401 from a data call', async () => {
    mockFetch({ 'GET /api/v1/metrics': { status: 401, body: { title: 'Unauthorized', detail: 'session expired' } } })
    const onUnauthorized = vi.fn()
    setUnauthorizedHandler(onUnauthorized)
    await expect(api.metrics()).rejects.toMatchObject({ status: 401 })
    expect(onUnauthorized).toHaveBeenCalledOnce()
  })

  it('treats a 401 from the session probe as "not logged in", without redirecting', async () => {
    mockFetch({ 'GET /api/v1/session': { status: 401, body: { title: 'Unauthorized' } } })
    const onUnauthorized = vi.fn()
    setUnauthorizedHandler(onUnauthorized)
    await expect(api.getSession()).resolves.toBeNull()
    expect(onUnauthorized).not.toHaveBeenCalled()
  })

  it('surfaces a refused login as an error carrying the server detail', async () => {
    const fetch = mockFetch({
      'POST /api/v1/session': { status: 401, body: { title: 'Unauthorized', detail: 'Invalid token' } },
    })
    const onUnauthorized = vi.fn()
    setUnauthorizedHandler(onUnauthorized)
    await expect(api.login('nope')).rejects.toMatchObject({ status: 401, detail: 'Invalid token' })
    expect(JSON.parse(String(fetch.mock.calls[0]![1]?.body))).toEqual({ token: 'nope' })
    expect(onUnauthorized).not.toHaveBeenCalled()
  })

  it('accepts 204 and empty 200 bodies', async () => {
    mockFetch({
      'DELETE /api/v1/session': { status: 204 },
      'PUT /api/v1/dashboards/a': { status: 200, body: '' },
    })
    await expect(api.logout()).resolves.toBeUndefined()
    await expect(api.saveDashboard({ name: 'a', title: 'A', panels: [] })).resolves.toBeUndefined()
  })

  it('escapes dashboard names in paths', async () => {
    const fetch = mockFetch({ 'DELETE /api/v1/dashboards/a%20b': { status: 204 } })
    await api.deleteDashboard('a b')
    expect(fetch.mock.calls[0]![0]).toBe('/api/v1/dashboards/a%20b')
  })
})

describe('url helpers', () => {
  it('formats matchers and skips empty values', () => {
    expect(formatMatch({ host: 'a', env: '', region: 'eu' })).toBe('host=a,region=eu')
    expect(formatMatch(undefined)).toBe('')
  })

  it('builds stream URLs with repeated metric parameters', () => {
    expect(streamUrl(null)).toBe('/api/v1/stream')
    expect(streamUrl(['a', 'b'], { host: 'x' })).toBe('/api/v1/stream?metric=a&metric=b&match=host%3Dx')
  })
})
