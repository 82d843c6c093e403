/** uPlot options for a time series chart: palette, units on the y axis, threshold lines. */
import type uPlot from 'uplot'
import type { Threshold } from '@/api/types'
import { formatValue } from './format'

export const PALETTE = [
  '#0ea5e9', '#f97316', '#22c55e', '#a855f7', '#eab308',
  '#ec4899', '#14b8a6', '#6366f1', '#84cc16', '#f43f5e',
]

export type ChartOptions = Omit<uPlot.Options, 'width' | 'height'>

export interface ChartSpec {
  seriesLabels: string[]
  unit?: string
  thresholds?: Threshold[]
  dark?: boolean
  /** The time window to show, read at each redraw (so a sliding window needs no new plot). */
  xRange?: () => [number, number] | null
}

/** Draws each threshold as a dashed horizontal line across the plot area. */
export function thresholdsPlugin(thresholds: Threshold[]): uPlot.Plugin {
  return {
    hooks: {
      draw: (u: uPlot) => {
        if (!thresholds.length) return
        const { ctx, bbox } = u
        ctx.save()
        ctx.lineWidth = Math.max(1, devicePixelRatio || 1) * 1.5
        ctx.setLineDash([6 * (devicePixelRatio || 1), 4 * (devicePixelRatio || 1)])
        for (const t of thresholds) {
          const y = u.valToPos(t.value, 'y', true)
          if (!Number.isFinite(y) || y < bbox.top || y > bbox.top + bbox.height) continue
          ctx.strokeStyle = t.color
          ctx.beginPath()
          ctx.moveTo(bbox.left, y)
          ctx.lineTo(bbox.left + bbox.width, y)
          ctx.stroke()
        }
        ctx.restore()
      },
    },
  }
}

export function buildChartOptions(spec: ChartSpec): ChartOptions {
  const unit = spec.unit ?? ''
  const text = spec.dark ? '#cbd5e1' : '#334155'
  const grid = spec.dark ? 'rgba(148,163,184,0.15)' : 'rgba(100,116,139,0.15)'
  const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } }
  return {
    ms: 1,
    cursor: { drag: { x: true, y: false } },
    legend: { show: true, live: true },
    scales: {
      x: {
        time: true,
        range: (_u: uPlot, min: number, max: number): [number, number] => spec.xRange?.() ?? [min, max],
      },
    },
    series: [
      {},
      ...spec.seriesLabels.map((label, i) => ({
        label,
        stroke: PALETTE[i % PALETTE.length],
        width: 1.5,
        // Series are aligned on a shared x axis: bridge the nulls other series' timestamps add.
        spanGaps: true,
        value: (_u: uPlot, v: number | null) => formatValue(v, unit),
      })),
    ],
    axes: [
      axis,
      {
        ...axis,
        label: unit || undefined,
        labelSize: unit ? 20 : 0,
        size: 64,
        values: (_u: uPlot, splits: number[]) => splits.map((v) => formatValue(v, unit)),
      },
    ],
    plugins: [thresholdsPlugin(spec.thresholds ?? [])],
  }
}
