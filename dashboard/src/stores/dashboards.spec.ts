import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { slugify, useDashboardsStore } from './dashboards'
import { mockFetch } from '@/test/fakes'
import type { Dashboard, Panel } from '@/api/types'

const panel = (title: string): Omit<Panel, 'id'> => ({
  title,
  metric: 'cpu.usage',
  match: { host: 'a' },
  agg: 'avg',
  unit: '%',
  thresholds: [{ value: 90, color: '#ef4444' }],
})

function server(initial: Dashboard[] = []) {
  const saved = new Map(initial.map((d) => [d.name, d]))
  const fetch = mockFetch({
    'GET /api/v1/dashboards': () => ({ body: { dashboards: [...saved.values()] } }),
  })
  fetch.mockImplementation(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const path = new URL(String(input), 'http://x').pathname
    const name = decodeURIComponent(path.split('/').pop()!)
    if (init.method === 'PUT') {
      saved.set(name, JSON.parse(String(init.body)))
      return new Response('{}', { status: 200, headers: { 'content-type': 'application/json' } })
    }
    if (init.method === 'DELETE') {
      saved.delete(name)
      return new Response(null, { status: 204 })
    }
    return new Response(JSON.stringify({ dashboards: [...saved.values()] }), {
      headers: { 'content-type': 'application/json' },
    })
  })
  return { fetch, saved }
}

const titles = (d: Dashboard | null) => d?.panels.map((p) => p.title)

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.unstubAllGlobals())

describe('dashboards store', () => {
  it('lists, creates and opens dashboards', async () => {
    const { saved } = server([{ name: 'web', title: 'Web', panels: [] }])
    const store = useDashboardsStore()
    await store.fetchAll()
    expect(store.list.map((d) => d.name)).toEqual(['web'])

    const name = await store.create('DB servers!')
    expect(name).toBe('db-servers')
    expect(saved.get('db-servers')).toEqual({ name: 'db-servers', title: 'DB servers!', panels: [] })
    await expect(store.create('db servers')).rejects.toThrow(/already exists/)

    expect(await store.open('db-servers')).toBe(true)
    expect(store.current?.title).toBe('DB servers!')
    expect(await store.open('missing')).toBe(false)
    expect(store.current).toBeNull()
  })

  it('adds, removes and moves panels locally, marking the dashboard dirty', async () => {
    server([{ name: 'web', title: 'Web', panels: [] }])
    const store = useDashboardsStore()
    await store.open('web')
    const a = store.addPanel(panel('A'))
    const b = store.addPanel(panel('B'))
    const c = store.addPanel(panel('C'))
    expect(store.dirty).toBe(true)
    expect(new Set([a, b, c]).size).toBe(3)
    expect(a).toMatch(/^[0-9a-f-]{36}$/)

    store.movePanel(c, -1)
    expect(titles(store.current)).toEqual(['A', 'C', 'B'])
    store.movePanel(a, -1) // already first: stays
    expect(titles(store.current)).toEqual(['A', 'C', 'B'])
    store.movePanelTo(a, 99)
    expect(titles(store.current)).toEqual(['C', 'B', 'A'])

    store.removePanel(b)
    expect(titles(store.current)).toEqual(['C', 'A'])

    store.updatePanel({ ...store.current!.panels[0]!, title: 'C2', unit: 'ms' })
    expect(store.current!.panels[0]).toMatchObject({ id: c, title: 'C2', unit: 'ms' })
  })

  it('does not share panel objects with the caller or the saved list', async () => {
    server([{ name: 'web', title: 'Web', panels: [] }])
    const store = useDashboardsStore()
    await store.open('web')
    const p = panel('A')
    store.addPanel(p)
    p.thresholds.push({ value: 1, color: '#000' })
    expect(store.current!.panels[0]!.thresholds).toHaveLength(1)
    expect(store.list[0]!.panels).toHaveLength(0)
  })

  it('saves the whole dashboard with PUT and clears the dirty flag', async () => {
    const { fetch, saved } = server([{ name: 'web', title: 'Web', panels: [] }])
    const store = useDashboardsStore()
    await store.open('web')
    store.addPanel(panel('CPU'))
    store.setTitle('Web servers')
    await store.save()
    const put = fetch.mock.calls.find(([, init]) => init?.method === 'PUT')!
    expect(put[0]).toBe('/api/v1/dashboards/web')
    const body = JSON.parse(String(put[1]!.body)) as Dashboard
    expect(body).toMatchObject({ name: 'web', title: 'Web servers' })
    expect(body.panels[0]).toMatchObject({ title: 'CPU', metric: 'cpu.usage', match: { host: 'a' }, unit: '%' })
    expect(saved.get('web')!.panels).toHaveLength(1)
    expect(store.dirty).toBe(false)
    expect(store.list[0]!.title).toBe('Web servers')
  })

  it('keeps the edits and reports the error when saving fails', async () => {
    server([{ name: 'web', title: 'Web', panels: [] }])
    const store = useDashboardsStore()
    await store.open('web')
    store.addPanel(panel('CPU'))
    mockFetch({ 'PUT /api/v1/dashboards/web': { status: 400, body: { title: 'Bad Request', detail: 'unknown agg' } } })
    await expect(store.save()).rejects.toMatchObject({ status: 400 })
    expect(store.saveError).toBe('unknown agg')
    expect(store.dirty).toBe(true)
    expect(store.current!.panels).toHaveLength(1)
  })

  it('deletes a dashboard', async () => {
    const { saved } = server([{ name: 'web', title: 'Web', panels: [] }])
    const store = useDashboardsStore()
    await store.open('web')
    await store.remove('web')
    expect(saved.has('web')).toBe(false)
    expect(store.list).toEqual([])
    expect(store.current).toBeNull()
  })

  it('opens a dashboard saved before the builder as time series in two columns, unchanged until edited', async () => {
    server([{ name: 'old', title: 'Old', panels: [{ ...panel('A'), id: 'a' }, { ...panel('B'), id: 'b' }] }])
    const store = useDashboardsStore()
    await store.open('old')
    expect(store.current!.panels.map((p) => [p.type, p.layout])).toEqual([
      ['timeseries', { x: 0, y: 0, w: 6, h: 7 }],
      ['timeseries', { x: 6, y: 0, w: 6, h: 7 }],
    ])
    expect(store.dirty).toBe(false)
  })

  it('undoes the last changes one by one; back at the saved state it is clean', async () => {
    server([{ name: 'web', title: 'Web', panels: [] }])
    const store = useDashboardsStore()
    await store.open('web')
    expect(store.canUndo).toBe(false)
    const a = store.addPanel({ ...panel('A'), type: 'stat' })
    expect(store.current!.panels[0]!.layout).toEqual({ x: 0, y: 0, w: 3, h: 4 })
    store.setLayout([{ i: a, x: 6, y: 0, w: 6, h: 5 }])
    // The same place again is no change.
    store.setLayout([{ i: a, x: 6, y: 0, w: 6, h: 5 }])
    store.setTitle('Web 2')
    expect(store.canUndo).toBe(true)

    store.undo()
    expect(store.current!.title).toBe('Web')
    expect(store.current!.panels[0]!.layout).toEqual({ x: 6, y: 0, w: 6, h: 5 })
    store.undo()
    expect(store.current!.panels[0]!.layout).toEqual({ x: 0, y: 0, w: 3, h: 4 })
    expect(store.dirty).toBe(true)
    store.undo()
    expect(store.current!.panels).toHaveLength(0)
    expect(store.dirty).toBe(false)
    expect(store.canUndo).toBe(false)
  })

  it('discards the changes, and saves variables and the time range with the document', async () => {
    const { saved } = server([{ name: 'web', title: 'Web', panels: [] }])
    const store = useDashboardsStore()
    await store.open('web')
    store.setVariables([{ name: 'host', metric: 'cpu.usage' }])
    store.setRange({ key: '24h' })
    expect(store.dirty).toBe(true)
    store.discard()
    expect(store.dirty).toBe(false)
    expect(store.current!.variables).toEqual([])

    store.setVariables([{ name: 'host', metric: 'cpu.usage' }])
    store.setRange({ key: '24h' })
    await store.save()
    expect(saved.get('web')).toMatchObject({ variables: [{ name: 'host', metric: 'cpu.usage' }], range: { key: '24h' } })
    expect(store.dirty).toBe(false)
  })

  it('slugifies titles into names', () => {
    expect(slugify('  Web / API — prod ')).toBe('web-api-prod')
    expect(slugify('!!!')).toMatch(/^dashboard-[0-9a-f]{8}$/)
    expect(slugify('2024 report')).toBe('d-2024-report')
  })
})
