import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import {
  FAILED_ATTEMPTS_BEFORE_POLLING,
  POLL_MS,
  PROBE_MS,
  READY_TIMEOUT_MS,
  parseSample,
  useLiveStore,
} from './live'
import { setUnauthorizedHandler } from '@/api/client'
import { FakeEventSource, mockFetch } from '@/test/fakes'
import type { LiveSample } from '@/api/types'

const microtasks = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve()
}

function sample(metric: string, labels: Record<string, string>, value = 1, ts = 1000): LiveSample {
  return { metric, labels, value, ts }
}

beforeEach(() => {
  setActivePinia(createPinia())
  FakeEventSource.install()
})
afterEach(() => {
  vi.useRealTimers()
  vi.unstubAllGlobals()
  setUnauthorizedHandler(() => {})
})

describe('live store', () => {
  it('opens nothing before start and one stream after', async () => {
    const live = useLiveStore()
    live.subscribe({ metrics: ['cpu'] }, () => {})
    await microtasks()
    expect(FakeEventSource.instances).toHaveLength(0)
    expect(live.state).toBe('offline')

    live.start()
    await microtasks()
    expect(FakeEventSource.instances).toHaveLength(1)
    expect(FakeEventSource.latest().url).toBe('/api/v1/stream?metric=cpu')
    expect(live.state).toBe('reconnecting')
    FakeEventSource.latest().open()
    expect(live.state).toBe('live')
  })

  it('multiplexes subscribers over one connection with the union of their metrics', async () => {
    const live = useLiveStore()
    live.start()
    live.subscribe({ metrics: ['mem'] }, () => {})
    live.subscribe({ metrics: ['cpu'], match: { host: 'a' } }, () => {})
    live.subscribe({ metrics: ['cpu'], match: { host: 'b' } }, () => {})
    await microtasks()
    expect(FakeEventSource.instances).toHaveLength(1)
    expect(FakeEventSource.latest().url).toBe('/api/v1/stream?metric=cpu&metric=mem')
  })

  it('streams every metric when logged in with no subscriber, after a short grace period', async () => {
    vi.useFakeTimers()
    const live = useLiveStore()
    live.start()
    expect(FakeEventSource.instances).toHaveLength(0)
    await vi.advanceTimersByTimeAsync(500)
    expect(FakeEventSource.instances).toHaveLength(1)
    expect(FakeEventSource.latest().url).toBe('/api/v1/stream')
  })

  it('hands each sample only to the subscribers whose metric and labels match', async () => {
    const live = useLiveStore()
    live.start()
    const hostA = vi.fn()
    const hostB = vi.fn()
    const allCpu = vi.fn()
    const mem = vi.fn()
    live.subscribe({ metrics: ['cpu'], match: { host: 'a' } }, hostA)
    live.subscribe({ metrics: ['cpu'], match: { host: 'b' } }, hostB)
    live.subscribe({ metrics: ['cpu'] }, allCpu)
    live.subscribe({ metrics: ['mem'] }, mem)
    await microtasks()
    const es = FakeEventSource.latest()
    es.open()

    es.sample(sample('cpu', { host: 'a', core: '0' }, 5), '1')
    es.sample(sample('cpu', { host: 'b' }, 7), '2')
    es.sample(sample('mem', { host: 'a' }, 9), '3')
    es.sample(sample('disk', { host: 'a' }, 9), '4')

    expect(hostA.mock.calls.map(([s]) => s.value)).toEqual([5])
    expect(hostB.mock.calls.map(([s]) => s.value)).toEqual([7])
    expect(allCpu.mock.calls.map(([s]) => s.value)).toEqual([5, 7])
    expect(mem.mock.calls.map(([s]) => s.value)).toEqual([9])
  })

  it('streams every metric when a subscriber asks for all of them', async () => {
    const live = useLiveStore()
    live.start()
    live.subscribe({ metrics: ['cpu'] }, () => {})
    const all = vi.fn()
    const off = live.subscribe({}, all)
    await microtasks()
    expect(FakeEventSource.latest().url).toBe('/api/v1/stream')
    FakeEventSource.latest().sample(sample('anything', {}))
    expect(all).toHaveBeenCalledOnce()

    off()
    await microtasks()
    // The new connection resumes after the last event the old one received.
    expect(FakeEventSource.latest().url).toBe('/api/v1/stream?metric=cpu&last_event_id=1')
    expect(FakeEventSource.instances.filter((es) => !es.closed)).toHaveLength(1)
  })

  it('stops delivering after unsubscribe', async () => {
    const live = useLiveStore()
    live.start()
    const fn = vi.fn()
    const off = live.subscribe({ metrics: ['cpu'] }, fn)
    await microtasks()
    off()
    off() // idempotent
    FakeEventSource.latest().sample(sample('cpu', {}))
    expect(fn).not.toHaveBeenCalled()
  })

  it('keeps other subscribers fed when one throws, and ignores malformed data', async () => {
    vi.spyOn(console, 'error').mockImplementation(() => {})
    const live = useLiveStore()
    live.start()
    const good = vi.fn()
    live.subscribe({ metrics: ['cpu'] }, () => {
      throw new Error('broken panel')
    })
    live.subscribe({ metrics: ['cpu'] }, good)
    await microtasks()
    const es = FakeEventSource.latest()
    es.sample(sample('cpu', {}))
    es.sample({ metric: 'cpu', value: 'NaN?' })
    expect(good).toHaveBeenCalledOnce()
    expect(parseSample('not json')).toBeNull()
  })

  it('shows reconnecting while the browser retries, and live again once it reconnects', async () => {
    const live = useLiveStore()
    live.subscribe({}, () => {})
    live.start()
    const es = FakeEventSource.latest()
    es.open()
    expect(live.state).toBe('live')
    es.fail(false)
    expect(live.state).toBe('reconnecting')
    // The browser retries the same EventSource (sending Last-Event-ID itself): no new one.
    expect(FakeEventSource.instances).toHaveLength(1)
    es.open()
    expect(live.state).toBe('live')
  })

  it('reopens after an HTTP error once the session is confirmed', async () => {
    vi.useFakeTimers()
    mockFetch({ 'GET /api/v1/session': { body: { tenant: 'default', scopes: [] } } })
    const live = useLiveStore()
    live.subscribe({}, () => {})
    live.start()
    const first = FakeEventSource.latest()
    first.fail(true)
    expect(live.state).toBe('reconnecting')
    expect(first.closed).toBe(true)
    await vi.advanceTimersByTimeAsync(1000)
    expect(FakeEventSource.instances).toHaveLength(2)
    FakeEventSource.latest().open()
    expect(live.state).toBe('live')
  })

  it('goes offline and reports the lost session when the stream is refused with 401', async () => {
    vi.useFakeTimers()
    mockFetch({ 'GET /api/v1/session': { status: 401, body: { title: 'Unauthorized' } } })
    const onUnauthorized = vi.fn()
    setUnauthorizedHandler(onUnauthorized)
    const live = useLiveStore()
    live.subscribe({}, () => {})
    live.start()
    FakeEventSource.latest().fail(true)
    await vi.advanceTimersByTimeAsync(1000)
    expect(onUnauthorized).toHaveBeenCalledOnce()
    expect(live.state).toBe('offline')
    expect(FakeEventSource.instances).toHaveLength(1)
  })

  it('a new connection resumes after the last event the old one received', async () => {
    const live = useLiveStore()
    live.start()
    live.subscribe({ metrics: ['cpu'] }, () => {})
    await microtasks()
    const first = FakeEventSource.latest()
    first.open()
    first.emit('ready', {}, '1764104400000100')
    live.subscribe({ metrics: ['disk'] }, () => {})
    await microtasks()
    // Nothing received yet but where the stream started: resume from there.
    expect(FakeEventSource.latest().url).toBe('/api/v1/stream?metric=cpu&metric=disk&last_event_id=1764104400000100')
    FakeEventSource.latest().sample(sample('cpu', {}), '1764104400000123')
    // Another panel wants another metric: a new connection, which must not lose what the
    // first would have delivered meanwhile.
    live.subscribe({ metrics: ['mem'] }, () => {})
    await microtasks()
    expect(first.closed).toBe(true)
    expect(FakeEventSource.latest().url).toBe(
      '/api/v1/stream?metric=cpu&metric=disk&metric=mem&last_event_id=1764104400000123',
    )
    // After logout, the next session starts afresh.
    live.stop()
    live.start()
    expect(FakeEventSource.latest().url).toBe('/api/v1/stream?metric=cpu&metric=disk&metric=mem')
  })

  it('a reset makes every subscriber reload once, however many resets arrive together', async () => {
    vi.useFakeTimers()
    const live = useLiveStore()
    live.start()
    const cpuReload = vi.fn()
    const allReload = vi.fn()
    const samples = vi.fn()
    live.subscribe({ metrics: ['cpu'] }, samples, cpuReload)
    const offAll = live.subscribe({}, () => {}, allReload)
    live.subscribe({ metrics: ['mem'] }, () => {}) // no reload hook: ignored
    await vi.advanceTimersByTimeAsync(0)
    const es = FakeEventSource.latest()
    es.open()
    // A browser keeps the last id for events that carry none.
    es.emit('reset', {}, '500')
    es.emit('reset', {}, '500')
    await vi.advanceTimersByTimeAsync(0)
    expect(cpuReload).toHaveBeenCalledOnce()
    expect(allReload).toHaveBeenCalledOnce()
    expect(samples).not.toHaveBeenCalled()
    expect(live.resets).toBe(1)
    // Another reset soon after waits for the coalescing window, then reloads once more.
    es.emit('reset', {}, '500')
    await vi.advanceTimersByTimeAsync(100)
    expect(cpuReload).toHaveBeenCalledOnce()
    await vi.advanceTimersByTimeAsync(1000)
    expect(cpuReload).toHaveBeenCalledTimes(2)
    // The reset's id is where a new connection resumes.
    offAll()
    await vi.advanceTimersByTimeAsync(0)
    expect(FakeEventSource.latest().url).toBe('/api/v1/stream?metric=cpu&metric=mem&last_event_id=500')
  })

  it('closes the stream on stop and resumes the subscriptions on the next start', async () => {
    const live = useLiveStore()
    live.subscribe({ metrics: ['cpu'] }, () => {})
    live.start()
    const es = FakeEventSource.latest()
    es.open()
    live.stop()
    expect(es.closed).toBe(true)
    expect(live.state).toBe('offline')
    expect(live.url).toBeNull()
    live.start()
    expect(FakeEventSource.latest().url).toBe('/api/v1/stream?metric=cpu')
    expect(live.subscriberCount()).toBe(1)
  })

  describe('when the stream does not get through (a proxy cuts or buffers it)', () => {
    it('falls back to polling after three connections end before any event, and reloads every 10 s', async () => {
      vi.useFakeTimers()
      mockFetch({ 'GET /api/v1/session': { body: { tenant: 'default', scopes: [] } } })
      const live = useLiveStore()
      const reload = vi.fn()
      live.subscribe({ metrics: ['cpu'] }, () => {}, reload)
      live.start()
      await vi.advanceTimersByTimeAsync(0)
      // The proxy answers, then cuts each connection before anything came through.
      const es = FakeEventSource.latest()
      es.open()
      es.fail(false)
      expect(live.state).toBe('reconnecting')
      es.open()
      es.fail(false)
      expect(live.state).toBe('reconnecting')
      es.open()
      es.fail(false)
      expect(live.state).toBe('polling')
      expect(FakeEventSource.latest().closed).toBe(true)
      await vi.advanceTimersByTimeAsync(0)
      expect(reload).toHaveBeenCalledTimes(1)
      // (the reload runs just after each tick of the interval)
      await vi.advanceTimersByTimeAsync(POLL_MS + 1)
      expect(reload).toHaveBeenCalledTimes(2)
      await vi.advanceTimersByTimeAsync(POLL_MS)
      expect(reload).toHaveBeenCalledTimes(3)
      // No new stream while polling, even when a page subscribes, until the probe.
      live.subscribe({ metrics: ['mem'] }, () => {})
      await vi.advanceTimersByTimeAsync(0)
      expect(FakeEventSource.instances).toHaveLength(1)
    })

    it('counts a new stream that brings no `ready` within 5 s as failed (a buffering proxy)', async () => {
      vi.useFakeTimers()
      mockFetch({ 'GET /api/v1/session': { body: { tenant: 'default', scopes: [] } } })
      const live = useLiveStore()
      live.subscribe({}, () => {}, () => {})
      live.start()
      for (let attempt = 1; attempt <= FAILED_ATTEMPTS_BEFORE_POLLING; attempt++) {
        await vi.advanceTimersByTimeAsync(0)
        expect(FakeEventSource.instances).toHaveLength(attempt)
        const es = FakeEventSource.latest()
        // nginx holds even the headers back (the browser stays CONNECTING); a proxy that lets
        // the headers through holds the events.
        if (attempt === 2) {
          es.open()
          expect(live.state).toBe('live')
        }
        await vi.advanceTimersByTimeAsync(READY_TIMEOUT_MS)
        expect(es.closed).toBe(true)
        // The retry waits its back-off (1 s, then 2 s) and checks the session.
        await vi.advanceTimersByTimeAsync(attempt < FAILED_ATTEMPTS_BEFORE_POLLING ? 1000 * 2 ** (attempt - 1) : 0)
      }
      expect(live.state).toBe('polling')
    })

    it('a probe that gets through brings live back and reloads once more', async () => {
      vi.useFakeTimers()
      const live = useLiveStore()
      const reload = vi.fn()
      live.subscribe({ metrics: ['cpu'] }, () => {}, reload)
      live.start()
      await vi.advanceTimersByTimeAsync(0)
      for (let i = 0; i < FAILED_ATTEMPTS_BEFORE_POLLING; i++) {
        FakeEventSource.latest().open()
        FakeEventSource.latest().fail(false)
      }
      expect(live.state).toBe('polling')
      await vi.advanceTimersByTimeAsync(PROBE_MS)
      expect(FakeEventSource.instances).toHaveLength(2)
      const probe = FakeEventSource.latest()
      // A fresh stream: no resume id, and not `live` on headers alone.
      expect(probe.url).toBe('/api/v1/stream?metric=cpu')
      probe.open()
      expect(live.state).toBe('polling')
      const reloadsBefore = reload.mock.calls.length
      probe.emit('ready', {}, '42')
      expect(live.state).toBe('live')
      await vi.advanceTimersByTimeAsync(1000)
      expect(reload).toHaveBeenCalledTimes(reloadsBefore + 1)
      // No more polling.
      await vi.advanceTimersByTimeAsync(POLL_MS * 3)
      expect(reload).toHaveBeenCalledTimes(reloadsBefore + 1)
    })

    it('keeps reconnecting, never polling, while the server is down (connections fail to connect)', async () => {
      vi.useFakeTimers()
      const live = useLiveStore()
      live.subscribe({}, () => {}, () => {})
      live.start()
      await vi.advanceTimersByTimeAsync(0)
      const es = FakeEventSource.latest()
      es.open()
      es.emit('ready', {}, '7')
      expect(live.state).toBe('live')
      // A restart: the browser's retries are refused for a while, then it gets through again.
      for (let i = 0; i < 10; i++) {
        es.fail(false)
        await vi.advanceTimersByTimeAsync(1000)
      }
      expect(live.state).toBe('reconnecting')
      es.open()
      expect(live.state).toBe('live')
    })

    it('does not poll when connections bring events between drops', async () => {
      const live = useLiveStore()
      live.subscribe({}, () => {})
      live.start()
      const es = FakeEventSource.latest()
      for (let i = 0; i < 5; i++) {
        es.open()
        es.sample({ metric: 'cpu', ts: 1, value: i }, String(i + 1))
        es.fail(false)
      }
      expect(live.state).toBe('reconnecting')
      es.open()
      expect(live.state).toBe('live')
    })
  })
})
