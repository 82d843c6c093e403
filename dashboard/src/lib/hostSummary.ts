/**
 * A host's vital signs from the agent's procfs metrics (agent/README.md): CPU time by mode,
 * disk throughput and busy time, network errors and drops, filesystem fill. Counters
 * (`*_total`) are cumulative, so their rates come from the last two values seen of each series
 * (`prevTs`/`prevValue`); a series seen once, or reset (a reboot), gives no rate yet.
 */
import type { Labels } from '@/api/types'

export interface SeriesPoint {
  metric: string
  labels: Labels
  ts: number | null
  value: number | null
  prevTs?: number | null
  prevValue?: number | null
}

export interface HostSummary {
  /** Share of CPU time per mode since the previous collection, 0–100, busiest first. */
  cpuModes: { mode: string; percent: number }[]
  /** Bytes per second read and written, all disks. */
  diskReadBps: number | null
  diskWriteBps: number | null
  /** The busiest disk's busy time, 0–100 % (rate of `disk.io_time_seconds_total`). */
  diskBusyPercent: number | null
  /** Errors and drops per second, received and sent, all interfaces. */
  netErrorsPerSec: number | null
  netDropsPerSec: number | null
  /** Used share of each filesystem (`1 - avail/size`), fullest first. */
  fsFill: { mount: string; percent: number }[]
}

function rate(p: SeriesPoint): number | null {
  if (p.ts == null || p.value == null || p.prevTs == null || p.prevValue == null) return null
  const seconds = (p.ts - p.prevTs) / 1000
  if (seconds <= 0 || p.value < p.prevValue) return null
  return (p.value - p.prevValue) / seconds
}

/** Sum of the rates of `metrics`' series; null when none has a rate yet. */
function sumRates(points: SeriesPoint[], metrics: string[]): number | null {
  let sum: number | null = null
  for (const p of points) {
    if (!metrics.includes(p.metric)) continue
    const r = rate(p)
    if (r !== null) sum = (sum ?? 0) + r
  }
  return sum
}

export function summarizeHost(points: SeriesPoint[]): HostSummary | null {
  const byMode = new Map<string, number>()
  let busiest: number | null = null
  const size = new Map<string, number>()
  const avail = new Map<string, number>()
  for (const p of points) {
    if (p.metric === 'cpu.seconds_total' && p.labels.mode) {
      const r = rate(p)
      if (r !== null) byMode.set(p.labels.mode, (byMode.get(p.labels.mode) ?? 0) + r)
    } else if (p.metric === 'disk.io_time_seconds_total') {
      const r = rate(p)
      if (r !== null) busiest = Math.max(busiest ?? 0, r)
    } else if (p.metric === 'fs.size_bytes' && p.labels.mount && p.value != null) {
      size.set(p.labels.mount, p.value)
    } else if (p.metric === 'fs.avail_bytes' && p.labels.mount && p.value != null) {
      avail.set(p.labels.mount, p.value)
    }
  }
  const cpuTotal = [...byMode.values()].reduce((a, b) => a + b, 0)
  const cpuModes =
    cpuTotal > 0
      ? [...byMode.entries()]
          .map(([mode, r]) => ({ mode, percent: (100 * r) / cpuTotal }))
          .sort((a, b) => b.percent - a.percent || a.mode.localeCompare(b.mode))
      : []
  const fsFill = [...size.entries()]
    .filter(([mount, total]) => total > 0 && avail.has(mount))
    .map(([mount, total]) => ({ mount, percent: 100 * (1 - avail.get(mount)! / total) }))
    .sort((a, b) => b.percent - a.percent || a.mount.localeCompare(b.mount))
  const summary: HostSummary = {
    cpuModes,
    diskReadBps: sumRates(points, ['disk.read_bytes_total']),
    diskWriteBps: sumRates(points, ['disk.written_bytes_total']),
    diskBusyPercent: busiest === null ? null : Math.min(100, 100 * busiest),
    netErrorsPerSec: sumRates(points, ['net.receive_errs_total', 'net.transmit_errs_total']),
    netDropsPerSec: sumRates(points, ['net.receive_drop_total', 'net.transmit_drop_total']),
    fsFill,
  }
  const empty =
    !cpuModes.length &&
    !fsFill.length &&
    [summary.diskReadBps, summary.diskWriteBps, summary.diskBusyPercent, summary.netErrorsPerSec].every(
      (v) => v === null,
    )
  return empty ? null : summary
}
