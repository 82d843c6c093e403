import { describe, expect, it } from 'vitest'
import { alignSeries, bufferFromPoints, countPoints, insertPoint, lastTimestamp, trimBefore } from './series'
import { pickStep, resolveRange } from './timeRange'
import { parseMatch, queryFromState, stateFromQuery } from './routeState'
import { formatValue } from './format'
import { buildChartOptions } from './chartOptions'
import { labelsKey, matchesLabels } from './labels'
import { mapLimit } from './pool'

describe('series buffers', () => {
  it('keeps only the newest points beyond the cap', () => {
    const b = bufferFromPoints({}, [[1, 1], [2, 2], [3, 3]], 2)
    expect(b.xs).toEqual([2, 3])
    insertPoint(b, 4, 4, 2)
    expect(b.xs).toEqual([3, 4])
  })

  it('inserts in time order and lets the last write win on equal timestamps', () => {
    const b = bufferFromPoints({}, [[10, 1], [30, 3]])
    insertPoint(b, 20, 2)
    insertPoint(b, 30, 33)
    insertPoint(b, 5, 0)
    expect(b.xs).toEqual([5, 10, 20, 30])
    expect(b.ys).toEqual([0, 1, 2, 33])
    trimBefore(b, 11)
    expect(b.xs).toEqual([20, 30])
  })

  it('aligns series on a shared x axis with nulls', () => {
    const a = bufferFromPoints({ h: 'a' }, [[1, 10], [3, 30]])
    const b = bufferFromPoints({ h: 'b' }, [[2, 20], [3, 31]])
    const data = alignSeries([a, b])
    expect(data).toEqual([[1, 2, 3], [10, null, 30], [null, 20, 31]])
    expect(countPoints(data)).toBe(4)
    expect(lastTimestamp(data)).toBe(3)
    expect(alignSeries([])).toEqual([[]])
  })
})

describe('time ranges', () => {
  it('picks steps near range/600 from the rollup-friendly list', () => {
    expect(pickStep(15 * 60_000)).toBe('10s')
    expect(pickStep(3_600_000)).toBe('10s')
    expect(pickStep(86_400_000)).toBe('300s')
    expect(pickStep(7 * 86_400_000)).toBe('1800s')
  })

  it('resolves live, relative and custom ranges', () => {
    expect(resolveRange({ key: 'live' }, 1_000_000)).toEqual({ from: 100_000, to: 1_000_000, live: true })
    expect(resolveRange({ key: '1h' }, 10_000_000)).toMatchObject({ from: 6_400_000, step: '10s', live: false })
    expect(resolveRange({ key: 'custom', from: 0, to: 86_400_000 }, 1)).toMatchObject({ from: 0, to: 86_400_000, step: '300s' })
  })
})

describe('explorer URL state', () => {
  it('round-trips through the query string', () => {
    const s = stateFromQuery({ metric: 'cpu', match: 'host=a,region=eu', range: '24h', agg: 'max' })
    expect(s).toEqual({ metric: 'cpu', match: { host: 'a', region: 'eu' }, agg: 'max', range: { key: '24h' } })
    expect(stateFromQuery(queryFromState(s) as never)).toEqual(s)
    expect(stateFromQuery({ range: 'bogus', agg: 'median' })).toMatchObject({ range: { key: 'live' }, agg: 'avg' })
    expect(parseMatch('a=b=c,,x')).toEqual({ a: 'b=c' })
  })
})

describe('small helpers', () => {
  it('formats values', () => {
    expect(formatValue(42.123, '%')).toBe('42.12 %')
    expect(formatValue(1_250_000)).toBe('1.25M')
    expect(formatValue(null)).toBe('—')
  })

  it('matches labels and keys them independent of order', () => {
    expect(labelsKey({ b: '2', a: '1' })).toBe(labelsKey({ a: '1', b: '2' }))
    expect(matchesLabels({ host: 'a', x: 'y' }, { host: 'a' })).toBe(true)
    expect(matchesLabels({ host: 'b' }, { host: 'a' })).toBe(false)
  })

  it('bounds concurrency', async () => {
    let inFlight = 0
    let peak = 0
    const res = await mapLimit([1, 2, 3, 4, 5, 6], 2, async (n) => {
      peak = Math.max(peak, ++inFlight)
      await new Promise((r) => setTimeout(r, 1))
      inFlight--
      if (n === 3) throw new Error('x')
      return n * 2
    })
    expect(peak).toBe(2)
    expect(res.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled'])
  })
})

describe('chart options', () => {
  it('puts the unit on the y axis and shows the requested time window', () => {
    let windowMs: [number, number] | null = [100, 200]
    const o = buildChartOptions({ seriesLabels: ['a', 'b'], unit: 'ms', xRange: () => windowMs })
    expect(o.series).toHaveLength(3)
    expect(o.axes![1]!.label).toBe('ms')
    const values = o.axes![1]!.values as (u: unknown, s: number[]) => string[]
    expect(values(null, [1500, 20000])).toEqual(['1500 ms', '20k ms'])
    const range = o.scales!.x!.range as (u: unknown, min: number, max: number) => [number, number]
    expect(range(null, 120, 150)).toEqual([100, 200])
    windowMs = null
    expect(range(null, 120, 150)).toEqual([120, 150])
    expect(o.plugins).toHaveLength(1)
  })
})
