/** A stand-in for uPlot (jsdom has no canvas): records what the composable asks of it. */
import type uPlot from 'uplot'

export class FakeUplot {
  static instances: FakeUplot[] = []
  width: number
  height: number
  series: unknown[]
  data: uPlot.AlignedData
  destroyed = false
  setDataCalls = 0
  sizes: { width: number; height: number }[] = []

  constructor(
    readonly opts: uPlot.Options,
    data: uPlot.AlignedData,
    readonly target: HTMLElement,
  ) {
    this.width = opts.width
    this.height = opts.height
    this.series = opts.series
    this.data = data
    FakeUplot.instances.push(this)
  }

  setData(data: uPlot.AlignedData): void {
    this.data = data
    this.setDataCalls++
  }

  setSize(size: { width: number; height: number }): void {
    this.width = size.width
    this.height = size.height
    this.sizes.push(size)
  }

  destroy(): void {
    this.destroyed = true
  }

  static live(): FakeUplot[] {
    return FakeUplot.instances.filter((u) => !u.destroyed)
  }
}
