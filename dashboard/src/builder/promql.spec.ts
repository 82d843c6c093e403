import { afterEach, describe, expect, it, vi } from 'vitest'
import { api, ApiError, promMatrixToSeries } from '@/api/client'
import { mockFetch } from '@/test/fakes'
import { FS_FILL, HOST_OVERVIEW, NET_ERRORS_AND_DROPS } from './hostOverview'
import { escapePromqlString, isPromql, promqlName, promStep, substitutePromql, validateDashboard } from './model'

describe('PromQL variables', () => {
  it('replaces $name and ${name} with the value, escaped for a string literal', () => {
    expect(substitutePromql('rate(x{host="$host"}[1m])', { host: 'web-1' })).toBe('rate(x{host="web-1"}[1m])')
    expect(substitutePromql('x{host="${host}",a="b"}', { host: 'db' })).toBe('x{host="db",a="b"}')
    expect(substitutePromql('x{host="$host"}', { host: 'a"b\\c' })).toBe('x{host="a\\"b\\\\c"}')
    expect(escapePromqlString('say "hi"\\')).toBe('say \\"hi\\"\\\\')
  })
  it('leaves unknown variables as written and makes an "all" filter match anything', () => {
    expect(substitutePromql('x{host="$other"}[$__interval]', { host: 'a' })).toBe('x{host="$other"}[$__interval]')
    expect(substitutePromql('sum(x{host = "$host", mode!="idle"})', { host: '' })).toBe('sum(x{host=~".*", mode!="idle"})')
  })
  it('knows a PromQL query and picks a step of at least 10 s', () => {
    expect(isPromql({ promql: ' up ' })).toBe(true)
    expect(isPromql({ promql: '  ' })).toBe(false)
    expect(isPromql({})).toBe(false)
    expect(promStep(15 * 60_000)).toBe(10)
    expect(promStep(86_400_000)).toBe(300)
  })
  it('names a query by the first metric it selects', () => {
    expect(promqlName('sum(rate(net_receive_errs_total{host="a{b"}[1m]))')).toBe('net_receive_errs_total')
    expect(promqlName('sum by (mode) (rate(cpu_seconds_total[5m])) * 100')).toBe('cpu_seconds_total')
    expect(promqlName(' 1 + 1 ')).toBe('1 + 1')
  })
  it('imports a panel with PromQL and no metric', () => {
    const d = validateDashboard({ name: 'p', panels: [{ id: 'a', type: 'stat', promql: 'up', queries: [{ promql: 'x' }] }] })
    expect(d.panels[0]!.promql).toBe('up')
    expect(() => validateDashboard({ name: 'p', panels: [{ id: 'a', type: 'stat', promql: 3 }] })).toThrow(/promql/)
  })
})

describe('Prometheus matrix → series', () => {
  it('converts seconds to ms, strings to numbers, and leaves NaN and ±Inf out', () => {
    const s = promMatrixToSeries({
      resultType: 'matrix',
      result: [
        { metric: { mode: 'user' }, values: [[1700000000, '1.5'], [1700000010.5, 'NaN'], [1700000020, '+Inf'], [1700000030, '2']] },
        { metric: {}, values: [[1700000000, '-Inf']] },
      ],
    })
    expect(s).toEqual([
      { labels: { mode: 'user' }, points: [[1700000000000, 1.5], [1700000030000, 2]] },
      { labels: {}, points: [] },
    ])
  })
  it('takes an instant vector and tolerates junk', () => {
    expect(promMatrixToSeries({ resultType: 'vector', result: [{ metric: { a: 'b' }, value: [1, '3'] }] })).toEqual([
      { labels: { a: 'b' }, points: [[1000, 3]] },
    ])
    expect(promMatrixToSeries(null)).toEqual([])
    expect(promMatrixToSeries({ result: 'x' })).toEqual([])
  })
})

describe('Host overview template', () => {
  it('draws the counters as rates of the host, in Prometheus names', () => {
    const qs = HOST_OVERVIEW.panels.flatMap((p) => [p.promql, ...(p.queries ?? []).map((q) => q.promql)]).filter(isString)
    expect(qs.length).toBeGreaterThan(5)
    for (const q of qs) {
      expect(q).toContain('host="$host"')
      expect(q).not.toMatch(/[a-z]\.[a-z]/)
      // Every counter is read as a rate.
      expect(q.match(/_total\{/g)?.length ?? 0).toBe(q.match(/rate\([a-z_]+_total\{/g)?.length ?? 0)
    }
    expect(qs).toContain(FS_FILL)
    expect(FS_FILL).toBe('100 * (1 - fs_avail_bytes{host="$host"} / fs_size_bytes{host="$host"})')
    const net = HOST_OVERVIEW.panels.find((p) => p.id === 'net-errors')!
    expect(net.promql).toBe(NET_ERRORS_AND_DROPS)
    expect(net.queries ?? []).toEqual([])
    expect(NET_ERRORS_AND_DROPS.split(' + ')).toEqual(
      ['receive_errs', 'transmit_errs', 'receive_drop', 'transmit_drop'].map(
        (c) => `sum by (device) (rate(net_${c}_total{host="$host"}[1m]))`,
      ),
    )
    expect(HOST_OVERVIEW.panels.find((p) => p.id === 'notes')!.text).not.toMatch(/cumulative/)
  })
})

function isString(v: unknown): v is string {
  return typeof v === 'string'
}

describe('api.promRange', () => {
  afterEach(() => vi.unstubAllGlobals())

  it('asks query_range in seconds and returns series in ms', async () => {
    const fetch = mockFetch({
      'GET /prometheus/api/v1/query_range': {
        body: { status: 'success', data: { resultType: 'matrix', result: [{ metric: { mode: 'user' }, values: [[10, '1']] }] } },
      },
    })
    await expect(api.promRange('up', 1_000, 61_500, 10)).resolves.toEqual([{ labels: { mode: 'user' }, points: [[10_000, 1]] }])
    const url = new URL(String(fetch.mock.calls[0]![0]), 'http://x')
    expect(Object.fromEntries(url.searchParams)).toEqual({ query: 'up', start: '1.000', end: '61.500', step: '10' })
  })

  it("carries the server's message of a Prometheus error", async () => {
    mockFetch({
      'GET /prometheus/api/v1/query_range': {
        status: 400,
        contentType: 'application/json',
        body: { status: 'error', errorType: 'bad_data', error: 'invalid PromQL: unclosed left parenthesis' },
      },
    })
    const e = await api.promRange('sum(', 0, 1000, 10).catch((x: unknown) => x)
    expect(e).toBeInstanceOf(ApiError)
    expect((e as ApiError).status).toBe(400)
    expect((e as ApiError).message).toBe('invalid PromQL: unclosed left parenthesis')
  })

  it('falls back to problem+json (a 401, a 422)', async () => {
    mockFetch({ 'GET /prometheus/api/v1/query_range': { status: 422, body: { title: 'Unprocessable', detail: 'step too small' } } })
    await expect(api.promRange('up', 0, 1000, 10)).rejects.toThrow('step too small')
  })
})
