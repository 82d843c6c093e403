/** Test doubles: a routed `fetch` and an EventSource the test drives by hand. */
import { vi } from 'vitest'

export interface FakeResponse {
  status?: number
  body?: unknown
  contentType?: string
}

type Route = FakeResponse | ((url: URL, init: RequestInit) => FakeResponse)

/** Stub global fetch; `routes` maps "METHOD /path" to a response. Unrouted calls answer 404. */
export function mockFetch(routes: Record<string, Route>) {
  const fn = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = new URL(String(input), 'http://localhost')
    const method = (init.method ?? 'GET').toUpperCase()
    const route = routes[`${method} ${url.pathname}`]
    const r: FakeResponse = route
      ? typeof route === 'function'
        ? route(url, init)
        : route
      : { status: 404, body: { title: 'Not Found', detail: 'no route' }, contentType: 'application/problem+json' }
    const status = r.status ?? 200
    const body = r.body === undefined || status === 204 ? null : typeof r.body === 'string' ? r.body : JSON.stringify(r.body)
    return new Response(body, {
      status,
      headers: { 'content-type': r.contentType ?? (status >= 400 ? 'application/problem+json' : 'application/json') },
    })
  })
  vi.stubGlobal('fetch', fn)
  return fn
}

export class FakeEventSource {
  static readonly CONNECTING = 0
  static readonly OPEN = 1
  static readonly CLOSED = 2
  static instances: FakeEventSource[] = []

  readonly url: string
  readyState = FakeEventSource.CONNECTING
  onopen: ((e: Event) => void) | null = null
  onerror: ((e: Event) => void) | null = null
  onmessage: ((e: MessageEvent) => void) | null = null
  closed = false
  private listeners = new Map<string, Set<(e: MessageEvent) => void>>()

  constructor(url: string | URL) {
    this.url = String(url)
    FakeEventSource.instances.push(this)
  }

  static latest(): FakeEventSource {
    const es = FakeEventSource.instances.at(-1)
    if (!es) throw new Error('no EventSource was created')
    return es
  }

  static install(): void {
    FakeEventSource.instances = []
    vi.stubGlobal('EventSource', FakeEventSource)
  }

  addEventListener(type: string, fn: (e: MessageEvent) => void): void {
    let set = this.listeners.get(type)
    if (!set) this.listeners.set(type, (set = new Set()))
    set.add(fn)
  }

  removeEventListener(type: string, fn: (e: MessageEvent) => void): void {
    this.listeners.get(type)?.delete(fn)
  }

  close(): void {
    this.closed = true
    this.readyState = FakeEventSource.CLOSED
  }

  // --- driven by tests ---
  open(): void {
    this.readyState = FakeEventSource.OPEN
    this.onopen?.(new Event('open'))
  }

  sample(data: object, id = '1'): void {
    const e = new MessageEvent('sample', { data: JSON.stringify(data), lastEventId: id })
    for (const fn of this.listeners.get('sample') ?? []) fn(e)
  }

  /** Any named event, e.g. `transition`. */
  emit(type: string, data: object, id = '1'): void {
    const e = new MessageEvent(type, { data: JSON.stringify(data), lastEventId: id })
    for (const fn of this.listeners.get(type) ?? []) fn(e)
  }

  /** A dropped connection the browser will retry (`closed: false`) or an HTTP error (`closed: true`). */
  fail(closed = false): void {
    this.readyState = closed ? FakeEventSource.CLOSED : FakeEventSource.CONNECTING
    this.onerror?.(new Event('error'))
  }
}

/** Let queued microtasks and resolved promises run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve()
  await new Promise((r) => setTimeout(r, 0))
}
