import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { POLL_MS, useAlertingStore } from './alerting'
import { ApiError } from '@/api/client'
import { FakeEventSource, mockFetch } from '@/test/fakes'
import type { AlertInstance, AlertTransition } from '@/api/types'

const microtasks = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve()
}

const firing: AlertInstance = { rule: 'high-cpu', labels: { host: 'a' }, state: 'OK', severity: 'warning', value: 10, since: 1 }

function routes(alerts: AlertInstance[] = [firing], transitions: AlertTransition[] = []) {
  return mockFetch({
    'GET /api/v1/alerts': () => ({ body: { alerts } }),
    'GET /api/v1/alerts/history': () => ({ body: { transitions } }),
    'GET /api/v1/rules': { body: { rules: [] } },
    'GET /api/v1/channels': { body: { channels: [] } },
  })
}

beforeEach(() => {
  setActivePinia(createPinia())
  FakeEventSource.install()
})
afterEach(() => {
  vi.useRealTimers()
  vi.unstubAllGlobals()
})

describe('alerting store', () => {
  it('loads alerts, history, rules and channels', async () => {
    routes()
    const store = useAlertingStore()
    await store.fetchAll()
    expect(store.loaded).toBe(true)
    expect(store.alerts).toEqual([firing])
    expect(store.notEnabled).toBe(false)
  })

  it('says when the server has no alerting', async () => {
    mockFetch({})
    const store = useAlertingStore()
    await store.fetchAll()
    expect(store.notEnabled).toBe(true)
  })

  it('applies live transitions at once, then refreshes once for a burst', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] })
    const fetch = routes()
    const store = useAlertingStore()
    await store.fetchAll()
    const stop = store.watch()
    const es = FakeEventSource.latest()
    expect(es.url).toBe('/api/v1/alerts/stream')
    es.open()
    expect(store.mode).toBe('live')
    const calls = fetch.mock.calls.length
    await vi.advanceTimersByTimeAsync(200) // the refresh after (re)connecting
    await microtasks()
    const t: AlertTransition = { id: 7, rule: 'high-cpu', labels: { host: 'a' }, from: 'OK', to: 'FIRING', value: 95, at: 5 }
    es.emit('transition', t)
    es.emit('transition', { ...t, id: 8 })
    expect(store.alerts[0]?.state).toBe('FIRING')
    expect(store.history.map((h) => h.id)).toEqual([8, 7])
    expect(store.firing).toBe(1)
    const before = fetch.mock.calls.length
    await vi.advanceTimersByTimeAsync(200)
    await microtasks()
    // One debounced refresh for both events: alerts + history + rules + channels.
    expect(fetch.mock.calls.length - before).toBe(4)
    expect(before).toBeGreaterThan(calls)
    stop()
    expect(es.closed).toBe(true)
    expect(store.mode).toBe('off')
  })

  it('falls back to polling while the stream is down', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] })
    const fetch = routes()
    const store = useAlertingStore()
    const stop = store.watch()
    FakeEventSource.latest().fail()
    expect(store.mode).toBe('polling')
    const before = fetch.mock.calls.length
    await vi.advanceTimersByTimeAsync(POLL_MS)
    await microtasks()
    expect(fetch.mock.calls.length).toBeGreaterThan(before)
    FakeEventSource.latest().open()
    expect(store.mode).toBe('live')
    stop()
  })

  it('shares one stream between pages', () => {
    routes()
    const store = useAlertingStore()
    const a = store.watch()
    const b = store.watch()
    expect(FakeEventSource.instances).toHaveLength(1)
    a()
    a()
    expect(FakeEventSource.latest().closed).toBe(false)
    b()
    expect(FakeEventSource.latest().closed).toBe(true)
  })

  it('saves rules and surfaces every invalid field of a refusal', async () => {
    let posted: unknown = null
    mockFetch({
      'POST /api/v1/rules': (_url, init) => {
        posted = JSON.parse(String(init.body))
        return {
          status: 422,
          body: {
            title: 'Unprocessable Entity',
            detail: 'condition.window: needs a window; for: not a duration',
            field: 'condition.window',
            errors: [
              { field: 'condition.window', message: 'needs a window' },
              { field: 'for', message: 'not a duration' },
            ],
          },
        }
      },
    })
    const store = useAlertingStore()
    const rule = { name: 'x', metric: 'm', condition: { aggregation: 'avg' as const, op: '>' as const, threshold: 1 } }
    const err = await store.saveRule(rule, true).catch((e: unknown) => e)
    expect(posted).toEqual(rule)
    expect(err).toBeInstanceOf(ApiError)
    expect((err as ApiError).errors.map((e) => e.field)).toEqual(['condition.window', 'for'])
  })

  it('tests a channel and reloads its delivery log', async () => {
    mockFetch({
      'POST /api/v1/channels/ops/test': { body: { ok: false, idempotencyKey: 'k', attempt: { at: 1, ok: false, statusCode: 503, error: 'HTTP 503', durationMs: 3 } } },
      'GET /api/v1/channels/ops/deliveries': {
        body: { deliveries: [{ idempotencyKey: 'k', state: 'TEST', status: 'failed', attempts: 1, createdAt: 1, lastError: 'HTTP 503', attemptLog: [] }] },
      },
      'GET /api/v1/rules': { body: { rules: [] } },
      'GET /api/v1/channels': { body: { channels: [] } },
    })
    const store = useAlertingStore()
    const result = await store.testChannel('ops')
    expect(result.ok).toBe(false)
    expect(store.deliveries.ops?.[0]?.status).toBe('failed')
  })
})
