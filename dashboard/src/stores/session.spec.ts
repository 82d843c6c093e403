import { beforeEach, afterEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { useSessionStore } from './session'
import { mockFetch } from '@/test/fakes'

const SESSION = { tenant: 'default', scopes: ['ingest', 'read', 'admin'] }

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.unstubAllGlobals())

describe('session store', () => {
  it('is authenticated after a successful check', async () => {
    mockFetch({ 'GET /api/v1/session': { body: SESSION } })
    const s = useSessionStore()
    expect(s.status).toBe('unknown')
    const p = s.check()
    expect(s.status).toBe('checking')
    await p
    expect(s.authenticated).toBe(true)
    expect(s.tenant).toBe('default')
    expect(s.scopes).toContain('admin')
  })

  it('is anonymous when the check answers 401', async () => {
    mockFetch({ 'GET /api/v1/session': { status: 401, body: { title: 'Unauthorized' } } })
    const s = useSessionStore()
    await s.check()
    expect(s.status).toBe('anonymous')
    expect(s.checkError).toBeNull()
  })

  it('shares one request between concurrent checks', async () => {
    const fetch = mockFetch({ 'GET /api/v1/session': { body: SESSION } })
    const s = useSessionStore()
    await Promise.all([s.check(), s.check(), s.check()])
    expect(fetch).toHaveBeenCalledTimes(1)
  })

  it('remembers why the server could not be reached', async () => {
    vi.stubGlobal('fetch', vi.fn().mockRejectedValue(new TypeError('Failed to fetch')))
    const s = useSessionStore()
    await s.check()
    expect(s.status).toBe('anonymous')
    expect(s.checkError).toBe('Failed to fetch')
  })

  it('logs in with a (trimmed) token', async () => {
    const fetch = mockFetch({ 'POST /api/v1/session': { body: SESSION } })
    const s = useSessionStore()
    await s.login('  secret \n')
    expect(JSON.parse(String(fetch.mock.calls[0]![1]?.body))).toEqual({ token: 'secret' })
    expect(s.authenticated).toBe(true)
    expect(s.tenant).toBe('default')
  })

  it('stays logged out and rethrows the detail on a refused token', async () => {
    mockFetch({ 'POST /api/v1/session': { status: 401, body: { title: 'Unauthorized', detail: 'Invalid token' } } })
    const s = useSessionStore()
    await expect(s.login('wrong')).rejects.toMatchObject({ detail: 'Invalid token' })
    expect(s.authenticated).toBe(false)
  })

  it('logs out through DELETE and forgets the session, even if the call fails', async () => {
    const fetch = mockFetch({
      'POST /api/v1/session': { body: SESSION },
      'DELETE /api/v1/session': { status: 204 },
    })
    const s = useSessionStore()
    await s.login('t')
    await s.logout()
    expect(fetch.mock.calls.at(-1)![1]?.method).toBe('DELETE')
    expect(s.status).toBe('anonymous')
    expect(s.tenant).toBe('')

    mockFetch({ 'POST /api/v1/session': { body: SESSION }, 'DELETE /api/v1/session': { status: 500, body: { title: 'boom' } } })
    await s.login('t')
    await expect(s.logout()).rejects.toBeTruthy()
    expect(s.authenticated).toBe(false)
  })

  it('expires on demand (a 401 elsewhere)', async () => {
    mockFetch({ 'POST /api/v1/session': { body: SESSION } })
    const s = useSessionStore()
    await s.login('t')
    s.expire()
    expect(s.authenticated).toBe(false)
  })
})
