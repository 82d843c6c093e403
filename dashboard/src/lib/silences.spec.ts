import { describe, expect, it } from 'vitest'
import type { Silence } from '@/api/types'
import { alertMatchers, formatDuration, matchersFromQuery, matchersFromRows, matchersToQuery, silenceStatus, silenceTiming } from './silences'

const MIN = 60_000
const HOUR = 60 * MIN

describe('silences', () => {
  it('says durations as people do', () => {
    expect(formatDuration(0)).toBe('0s')
    expect(formatDuration(45_000)).toBe('45s')
    expect(formatDuration(20 * MIN)).toBe('20m')
    expect(formatDuration(80 * MIN)).toBe('1h 20m')
    // A silence of 2h made a moment ago still reads 2h.
    expect(formatDuration(2 * HOUR - 900)).toBe('2h')
    expect(formatDuration(51 * HOUR)).toBe('2d 3h')
    expect(formatDuration(48 * HOUR)).toBe('2d')
  })

  it('moves the status on as time passes, never back from expired', () => {
    const s: Silence = { id: 'x', matchers: { host: 'a' }, startsAt: 1000, endsAt: 2000, comment: 'c', createdBy: 'a', createdAt: 0, status: 'pending' }
    expect(silenceStatus(s, 500)).toBe('pending')
    expect(silenceStatus(s, 1000)).toBe('active')
    expect(silenceStatus(s, 2000)).toBe('expired')
    expect(silenceStatus({ ...s, status: 'expired' }, 1500)).toBe('expired')
    // Just created by the server, seen on a browser clock a little behind: active, not pending.
    expect(silenceStatus({ ...s, status: 'active' }, 900)).toBe('active')
    expect(silenceTiming({ ...s, status: 'expired', endsAt: 1500 }, 1500 + HOUR)).toBe('ended 1h ago')
  })

  it('round-trips matchers through the URL, values with = included', () => {
    const rows = alertMatchers('high-cpu', { host: 'web-1', query: 'a=b' }, { host: 'override' })
    expect(rows).toEqual([
      { name: 'alertname', value: 'high-cpu' },
      { name: 'host', value: 'override' },
      { name: 'query', value: 'a=b' },
    ])
    expect(matchersFromQuery(matchersToQuery(rows))).toEqual(rows)
    expect(matchersFromQuery('host=a')).toEqual([{ name: 'host', value: 'a' }])
    expect(matchersFromQuery(['=nameless', 'no-equals', null])).toEqual([])
    expect(matchersFromQuery(undefined)).toEqual([])
  })

  it('turns rows into the matchers object, or says what is wrong', () => {
    expect(matchersFromRows([{ name: ' host ', value: 'a' }])).toEqual({ matchers: { host: 'a' } })
    expect(matchersFromRows([])).toHaveProperty('error')
    expect(matchersFromRows([{ name: 'host', value: ' ' }])).toHaveProperty('error')
    expect(matchersFromRows([{ name: 'host', value: 'a' }, { name: 'host', value: 'b' }])).toEqual({ error: 'The label host is matched twice; keep one.' })
  })
})
