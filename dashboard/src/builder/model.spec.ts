import { describe, expect, it } from 'vitest'
import type { Dashboard, Panel } from '@/api/types'
import { HOST_OVERVIEW } from './hostOverview'
import {
  ImportError,
  UndoHistory,
  gaugeFraction,
  lastValues,
  mergeAligned,
  migrateDashboard,
  nextPosition,
  resolveVariableValues,
  stableJson,
  substituteVariables,
  thresholdColor,
  topN,
  validateDashboard,
} from './model'

const old = (title: string): Panel => ({ id: title, title, metric: 'cpu.usage', match: {}, agg: 'avg', unit: '', thresholds: [] })

describe('migrateDashboard', () => {
  it('turns panels saved before the builder into time series flowing in two columns', () => {
    const d = migrateDashboard({ name: 'web', title: 'Web', panels: [old('a'), old('b'), old('c')] })
    expect(d.panels.map((p) => p.type)).toEqual(['timeseries', 'timeseries', 'timeseries'])
    expect(d.panels.map((p) => p.layout)).toEqual([
      { x: 0, y: 0, w: 6, h: 7 },
      { x: 6, y: 0, w: 6, h: 7 },
      { x: 0, y: 7, w: 6, h: 7 },
    ])
    expect(d.variables).toEqual([])
    // The old fields are kept as they were.
    expect(d.panels[0]).toMatchObject({ metric: 'cpu.usage', agg: 'avg', title: 'a' })
  })

  it('keeps the places of panels that have one and puts the others below them', () => {
    const placed: Panel = { ...old('p'), type: 'stat', layout: { x: 3, y: 2, w: 3, h: 4 } }
    const d = migrateDashboard({ name: 'x', title: 'x', panels: [placed, old('q')] })
    expect(d.panels[0]!.layout).toEqual({ x: 3, y: 2, w: 3, h: 4 })
    expect(d.panels[0]!.type).toBe('stat')
    expect(d.panels[1]!.layout).toEqual({ x: 0, y: 6, w: 6, h: 7 })
  })

  it('fills fields an old document lacks, clamps places into the grid, and does not change its input', () => {
    const input = { name: 'x', title: 'x', panels: [{ id: 'a', title: 'a', metric: 'm', layout: { x: 10, y: -3, w: 30, h: 0 } }] } as unknown as Dashboard
    const copy = JSON.parse(JSON.stringify(input))
    const d = migrateDashboard(input)
    expect(d.panels[0]).toMatchObject({ match: {}, agg: 'avg', unit: '', thresholds: [], layout: { x: 0, y: 0, w: 12, h: 1 } })
    expect(input).toEqual(copy)
    expect(migrateDashboard({ name: 'e', title: 'e', panels: undefined as unknown as Panel[] }).panels).toEqual([])
  })

  it('places a new panel below everything', () => {
    const d = migrateDashboard({ name: 'web', title: 'Web', panels: [old('a'), old('b'), old('c')] })
    expect(nextPosition(d.panels, 3, 4)).toEqual({ x: 0, y: 14, w: 3, h: 4 })
    expect(nextPosition([], 6, 7)).toEqual({ x: 0, y: 0, w: 6, h: 7 })
  })
})

describe('variables', () => {
  it('replaces $name and ${name} in label filters, drops a filter chosen as all, keeps unknown ones', () => {
    const vals = { host: 'web-2', dc: '' }
    expect(substituteVariables({ host: '$host', dc: '${dc}', cpu: 'total', x: '$other', y: 'a$host' }, vals)).toEqual({
      host: 'web-2',
      cpu: 'total',
      x: '$other',
      y: 'a$host',
    })
  })

  it('takes the value from the URL, else the default, else the first option', () => {
    const vars = [{ name: 'host' }, { name: 'dc', default: 'eu' }, { name: 'env', values: ['prod', 'dev'] }, { name: 'z' }]
    expect(resolveVariableValues(vars, { 'var-host': 'web-9' }, { host: ['web-1'] })).toEqual({ host: 'web-9', dc: 'eu', env: 'prod', z: '' })
    expect(resolveVariableValues(vars, {}, { host: ['web-1', 'web-2'] }).host).toBe('web-1')
    expect(resolveVariableValues(vars, { 'var-host': '' }, { host: ['web-1'] }).host).toBe('')
  })
})

describe('UndoHistory', () => {
  it('gives back earlier states newest first, skips repeats and keeps only the newest `limit`', () => {
    const h = new UndoHistory(3)
    h.push({ n: 1 })
    h.push({ n: 1 })
    expect(h.size).toBe(1)
    h.push({ n: 2 })
    h.push({ n: 3 })
    h.push({ n: 4 })
    expect(h.size).toBe(3)
    expect(h.pop()).toEqual({ n: 4 })
    expect(h.pop()).toEqual({ n: 3 })
    expect(h.pop()).toEqual({ n: 2 })
    expect(h.pop()).toBeNull()
  })

  it('stores copies, not the live object', () => {
    const h = new UndoHistory()
    const doc = { panels: [1] }
    h.push(doc)
    doc.panels.push(2)
    expect(h.pop()).toEqual({ panels: [1] })
  })
})

describe('thresholds and values', () => {
  const t = [
    { value: 95, color: 'red' },
    { value: 80, color: 'amber' },
  ]
  it('colours a stat by the highest threshold its value reaches', () => {
    expect(thresholdColor(50, t)).toBeNull()
    expect(thresholdColor(80, t)).toBe('amber')
    expect(thresholdColor(94.9, t)).toBe('amber')
    expect(thresholdColor(99, t)).toBe('red')
    expect(thresholdColor(null, t)).toBeNull()
    expect(thresholdColor(NaN, t)).toBeNull()
    expect(thresholdColor(5, [])).toBeNull()
  })

  it('places a gauge value between min and max', () => {
    expect(gaugeFraction(50)).toBe(0.5)
    expect(gaugeFraction(150)).toBe(1)
    expect(gaugeFraction(-1)).toBe(0)
    expect(gaugeFraction(5, 0, 10)).toBe(0.5)
    expect(gaugeFraction(5, 10, 10)).toBe(0)
    expect(gaugeFraction(null)).toBe(0)
  })

  it('takes the newest value of each series and the top N', () => {
    expect(lastValues([[1, 2, 3], [1, 2, null], [null, null, null]])).toEqual([2, null])
    expect(topN([{ n: 'a', value: 1 }, { n: 'b', value: 3 }, { n: 'c', value: null }, { n: 'd', value: 2 }], 2).map((r) => r.n)).toEqual(['b', 'd'])
  })

  it('merges aligned data sets on the union of their timestamps', () => {
    expect(mergeAligned([[[1, 3], [10, 30]], [[2, 3], [20, 30], [200, 300]]])).toEqual([
      [1, 2, 3],
      [10, null, 30],
      [null, 20, 30],
      [null, 200, 300],
    ])
  })

  it('compares documents regardless of key order', () => {
    expect(stableJson({ b: 1, a: { d: 2, c: [{ y: 1, x: 2 }] } })).toBe(stableJson({ a: { c: [{ x: 2, y: 1 }], d: 2 }, b: 1 }))
  })
})

describe('validateDashboard', () => {
  const good = { name: 'web', title: 'Web', panels: [{ ...old('a'), type: 'stat', layout: { x: 0, y: 0, w: 3, h: 4 } }] }
  const err = (doc: unknown): string => {
    try {
      validateDashboard(doc)
    } catch (e) {
      expect(e).toBeInstanceOf(ImportError)
      return (e as ImportError).field
    }
    throw new Error('no error')
  }

  it('takes an exported dashboard, as JSON text or object, and the Host overview template', () => {
    expect(validateDashboard(JSON.stringify(good)).name).toBe('web')
    expect(validateDashboard({ name: 'x', panels: [] }).title).toBe('x')
    expect(validateDashboard(HOST_OVERVIEW).panels.length).toBeGreaterThan(5)
  })

  it('names the bad field', () => {
    expect(err('{not json')).toBe('(document)')
    expect(err([])).toBe('(document)')
    expect(err({ ...good, name: 'has space' })).toBe('name')
    expect(err({ ...good, panels: {} })).toBe('panels')
    expect(err({ ...good, panels: [{ ...good.panels[0], type: 'pie' }] })).toBe('panels[0].type')
    expect(err({ ...good, panels: [{ ...good.panels[0], metric: '' }] })).toBe('panels[0].metric')
    expect(err({ ...good, panels: [{ ...good.panels[0], match: { host: 1 } }] })).toBe('panels[0].match.host')
    expect(err({ ...good, panels: [{ ...good.panels[0], agg: 'median' }] })).toBe('panels[0].agg')
    expect(err({ ...good, panels: [{ ...good.panels[0], layout: { x: 10, y: 0, w: 4, h: 2 } }] })).toBe('panels[0].layout')
    expect(err({ ...good, panels: [{ ...good.panels[0], layout: { x: 0, y: 'a', w: 4, h: 2 } }] })).toBe('panels[0].layout.y')
    expect(err({ ...good, panels: [{ ...good.panels[0], thresholds: [{ value: 'x', color: 'red' }] }] })).toBe('panels[0].thresholds[0].value')
    expect(err({ ...good, panels: [good.panels[0], good.panels[0]] })).toBe('panels[1].id')
    expect(err({ ...good, variables: [{ name: '1host' }] })).toBe('variables[0].name')
    expect(err({ ...good, variables: [{ name: 'host', values: [1] }] })).toBe('variables[0].values')
    expect(err({ ...good, range: { key: '3y' } })).toBe('range.key')
    expect(err({ ...good, panels: [{ ...good.panels[0], text: 'x'.repeat(300 * 1024) }] })).toBe('(document)')
  })

  it('lets text and alert panels go without a metric', () => {
    expect(() => validateDashboard({ name: 'n', panels: [{ id: 't', type: 'text', text: '# hi' }, { id: 'a', type: 'alerts' }] })).not.toThrow()
  })
})
