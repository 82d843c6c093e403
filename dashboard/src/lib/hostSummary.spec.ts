import { describe, expect, it } from 'vitest'
import { summarizeHost, type SeriesPoint } from './hostSummary'

const T0 = 1_764_104_400_000
const T1 = T0 + 10_000

function counter(metric: string, labels: Record<string, string>, before: number, after: number): SeriesPoint {
  return { metric, labels: { host: 'a', ...labels }, prevTs: T0, prevValue: before, ts: T1, value: after }
}

describe('summarizeHost', () => {
  it('turns the agent counters into CPU by mode, disk I/O, network errors and filesystem fill', () => {
    const s = summarizeHost([
      counter('cpu.seconds_total', { cpu: '0', mode: 'user' }, 100, 106),
      counter('cpu.seconds_total', { cpu: '1', mode: 'user' }, 100, 102),
      counter('cpu.seconds_total', { cpu: '0', mode: 'idle' }, 500, 504),
      counter('cpu.seconds_total', { cpu: '1', mode: 'idle' }, 500, 508),
      counter('disk.read_bytes_total', { device: 'vda' }, 0, 10_240),
      counter('disk.written_bytes_total', { device: 'vda' }, 0, 20_480),
      counter('disk.io_time_seconds_total', { device: 'vda' }, 10, 12.5),
      counter('disk.io_time_seconds_total', { device: 'vdb' }, 10, 10.5),
      counter('net.receive_errs_total', { device: 'eth0' }, 3, 13),
      counter('net.transmit_errs_total', { device: 'eth0' }, 0, 10),
      counter('net.receive_drop_total', { device: 'eth0' }, 0, 0),
      { metric: 'fs.size_bytes', labels: { host: 'a', mount: '/' }, ts: T1, value: 1000 },
      { metric: 'fs.avail_bytes', labels: { host: 'a', mount: '/' }, ts: T1, value: 250 },
      { metric: 'fs.size_bytes', labels: { host: 'a', mount: '/data' }, ts: T1, value: 1000 },
      { metric: 'fs.avail_bytes', labels: { host: 'a', mount: '/data' }, ts: T1, value: 900 },
    ])!
    expect(s.cpuModes.map((m) => [m.mode, Math.round(m.percent * 1e6) / 1e6])).toEqual([
      ['idle', 60],
      ['user', 40],
    ])
    expect(s.diskReadBps).toBe(1024)
    expect(s.diskWriteBps).toBe(2048)
    expect(s.diskBusyPercent).toBeCloseTo(25, 9)
    expect(s.netErrorsPerSec).toBe(2)
    expect(s.netDropsPerSec).toBe(0)
    expect(s.fsFill.map((f) => [f.mount, Math.round(f.percent * 1e6) / 1e6])).toEqual([
      ['/', 75],
      ['/data', 10],
    ])
  })

  it('gives no rate from a single value or across a counter reset', () => {
    const s = summarizeHost([
      { metric: 'cpu.seconds_total', labels: { cpu: '0', mode: 'user' }, ts: T1, value: 5 },
      counter('disk.read_bytes_total', { device: 'vda' }, 1000, 10),
      { metric: 'fs.size_bytes', labels: { mount: '/' }, ts: T1, value: 100 },
      { metric: 'fs.avail_bytes', labels: { mount: '/' }, ts: T1, value: 100 },
    ])!
    expect(s.cpuModes).toEqual([])
    expect(s.diskReadBps).toBeNull()
    expect(s.fsFill).toEqual([{ mount: '/', percent: 0 }])
  })

  it('is null for a host without agent metrics', () => {
    expect(summarizeHost([{ metric: 'temperature', labels: {}, ts: T1, value: 21 }])).toBeNull()
  })
})
