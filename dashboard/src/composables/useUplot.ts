/**
 * One uPlot per chart element: created on mount, `setData` on data changes, `setSize` when
 * the element resizes, destroyed on unmount. The element carries `data-points` (values
 * painted, over all series) and `data-last-ts` (newest painted timestamp) for tests.
 */
import { onBeforeUnmount, onMounted, shallowRef, watch, type Ref } from 'vue'
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'
import type { ChartOptions } from '@/lib/chartOptions'
import { countPoints, lastTimestamp } from '@/lib/series'

const nextFrame: (cb: () => void) => void =
  typeof requestAnimationFrame === 'function' ? (cb) => requestAnimationFrame(cb) : (cb) => setTimeout(cb, 16)

export interface UseUplotOptions {
  /** Rebuilt options make a new plot; keep data out of this function. */
  options: () => ChartOptions
  data: () => uPlot.AlignedData
  /** Plot height in CSS pixels (the legend adds to it). */
  height?: number
}

export function useUplot(target: Ref<HTMLElement | null>, opts: UseUplotOptions) {
  const plot = shallowRef<uPlot | null>(null)
  const height = opts.height ?? 240
  let observer: ResizeObserver | null = null
  let resizeQueued = false

  function width(el: HTMLElement): number {
    return Math.max(120, Math.floor(el.clientWidth || el.getBoundingClientRect().width || 600))
  }

  function mark(el: HTMLElement, data: uPlot.AlignedData): void {
    el.dataset.points = String(countPoints(data as ArrayLike<unknown>[]))
    const last = lastTimestamp(data as ArrayLike<unknown>[])
    el.dataset.lastTs = last === null ? '' : String(last)
  }

  /** What the plot shows: new options and new data often come in the same tick. */
  let shown: uPlot.AlignedData | null = null

  function create(): void {
    const el = target.value
    if (!el) return
    plot.value?.destroy()
    const data = opts.data()
    plot.value = new uPlot({ ...opts.options(), width: width(el), height }, data, el)
    shown = data
    mark(el, data)
  }

  function update(data: uPlot.AlignedData): void {
    const el = target.value
    const u = plot.value
    if (!el || !u || data === shown) return
    shown = data
    // A series appeared or vanished: the options describe a different set of lines.
    if (u.series.length !== data.length) return create()
    u.setData(data)
    mark(el, data)
  }

  function resize(): void {
    if (resizeQueued) return
    resizeQueued = true
    nextFrame(() => {
      resizeQueued = false
      const el = target.value
      const u = plot.value
      if (!el || !u) return
      const w = width(el)
      if (w !== u.width) u.setSize({ width: w, height })
    })
  }

  onMounted(() => {
    create()
    if (target.value && typeof ResizeObserver !== 'undefined') {
      observer = new ResizeObserver(resize)
      observer.observe(target.value)
    }
  })

  watch(opts.options, create)
  watch(opts.data, update)

  onBeforeUnmount(() => {
    observer?.disconnect()
    observer = null
    plot.value?.destroy()
    plot.value = null
  })

  return { plot }
}
