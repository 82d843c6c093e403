/**
 * Columnar series buffers and their alignment into uPlot data. Points live in two parallel
 * arrays per series; nothing allocates an object per point.
 */
import type { Labels, Point } from '@/api/types'
import { labelsKey } from './labels'

export interface SeriesBuffer {
  key: string
  labels: Labels
  xs: number[]
  ys: number[]
}

/** `[x, ...ys]` as uPlot wants it. */
export type Aligned = [number[], ...(number | null)[][]]

export const MAX_POINTS_PER_SERIES = 2000
export const MAX_SERIES = 30

export function bufferFromPoints(labels: Labels, points: Point[], max = MAX_POINTS_PER_SERIES): SeriesBuffer {
  const start = Math.max(0, points.length - max)
  const n = points.length - start
  const xs = new Array<number>(n)
  const ys = new Array<number>(n)
  for (let i = 0; i < n; i++) {
    const p = points[start + i]!
    xs[i] = p[0]
    ys[i] = p[1]
  }
  const buf = { key: labelsKey(labels), labels, xs, ys }
  // The server sends points in order; a defensive sort costs nothing when it does.
  if (!isSorted(xs)) sortBuffer(buf)
  return buf
}

function isSorted(xs: number[]): boolean {
  for (let i = 1; i < xs.length; i++) if (xs[i]! < xs[i - 1]!) return false
  return true
}

function sortBuffer(buf: SeriesBuffer): void {
  const idx = buf.xs.map((_, i) => i).sort((a, b) => buf.xs[a]! - buf.xs[b]!)
  buf.xs = idx.map((i) => buf.xs[i]!)
  buf.ys = idx.map((i) => buf.ys[i]!)
}

/** Insert in time order; the same timestamp replaces (last write wins, like the server). */
export function insertPoint(buf: SeriesBuffer, ts: number, value: number, max = MAX_POINTS_PER_SERIES): void {
  const { xs, ys } = buf
  const n = xs.length
  if (n === 0 || ts > xs[n - 1]!) {
    xs.push(ts)
    ys.push(value)
  } else {
    let lo = 0
    let hi = n
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (xs[mid]! < ts) lo = mid + 1
      else hi = mid
    }
    if (xs[lo] === ts) ys[lo] = value
    else {
      xs.splice(lo, 0, ts)
      ys.splice(lo, 0, value)
    }
  }
  if (xs.length > max) {
    const drop = xs.length - max
    xs.splice(0, drop)
    ys.splice(0, drop)
  }
}

/** Drop points older than `minTs`. */
export function trimBefore(buf: SeriesBuffer, minTs: number): void {
  let i = 0
  while (i < buf.xs.length && buf.xs[i]! < minTs) i++
  if (i > 0) {
    buf.xs.splice(0, i)
    buf.ys.splice(0, i)
  }
}

/** Merge series onto one shared, sorted x axis; a series without a point at some x gets null. */
export function alignSeries(bufs: readonly SeriesBuffer[]): Aligned {
  if (bufs.length === 0) return [[]]
  if (bufs.length === 1) return [bufs[0]!.xs.slice(), bufs[0]!.ys.slice()]

  let total = 0
  for (const b of bufs) total += b.xs.length
  const all = new Float64Array(total)
  let o = 0
  for (const b of bufs) for (const x of b.xs) all[o++] = x
  all.sort()
  const xs: number[] = []
  for (let i = 0; i < all.length; i++) if (i === 0 || all[i] !== all[i - 1]) xs.push(all[i]!)

  const out: Aligned = [xs]
  for (const b of bufs) {
    const ys = new Array<number | null>(xs.length).fill(null)
    let j = 0
    for (let i = 0; i < xs.length && j < b.xs.length; i++) {
      if (b.xs[j] === xs[i]) ys[i] = b.ys[j++]!
    }
    out.push(ys)
  }
  return out
}

/** Points that will be drawn (non-null y values over all series). */
export function countPoints(data: ArrayLike<unknown>[]): number {
  let n = 0
  for (let s = 1; s < data.length; s++) {
    const ys = data[s]!
    for (let i = 0; i < ys.length; i++) if (ys[i] != null) n++
  }
  return n
}

/** Newest x that carries at least one value, or null. */
export function lastTimestamp(data: ArrayLike<unknown>[]): number | null {
  const xs = data[0] as ArrayLike<number> | undefined
  if (!xs) return null
  for (let i = xs.length - 1; i >= 0; i--) {
    for (let s = 1; s < data.length; s++) if (data[s]![i] != null) return xs[i]!
  }
  return null
}
