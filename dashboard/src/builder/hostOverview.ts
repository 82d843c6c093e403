/**
 * The built-in "Host overview" dashboard for the agent's metrics (agent/README.md), with a
 * `$host` variable from the `host` label of `cpu.usage`. The counters (`*_total`) are drawn as
 * rates with PromQL (`/prometheus/api/v1/query_range`), where the agent's dotted names have
 * underscores (`cpu.seconds_total` → `cpu_seconds_total`). Operations between two vectors match
 * series on their labels as in Prometheus: the filesystem fill divides `fs_avail_bytes` by the
 * `fs_size_bytes` of the same mount, and network errors and drops are one sum per device (a
 * sum of four rates; one `rate({__name__=~…})` would give four series with the same labels once
 * the names are dropped, which Prometheus refuses).
 */
import type { Dashboard } from '@/api/types'

const host = { host: '$host' }
const H = 'host="$host"'
const rate = (metric: string, extra = '') => `rate(${metric}{${H}${extra}}[1m])`

/** Receive and transmit errors and drops of each network device of the host, per second. */
export const NET_ERRORS_AND_DROPS = ['net_receive_errs_total', 'net_transmit_errs_total', 'net_receive_drop_total', 'net_transmit_drop_total']
  .map((metric) => `sum by (device) (${rate(metric)})`)
  .join(' + ')

/** How full each filesystem of the host is: the share of its size no longer available, in %. */
export const FS_FILL = `100 * (1 - fs_avail_bytes{${H}} / fs_size_bytes{${H}})`

export const HOST_OVERVIEW: Dashboard = {
  name: 'host-overview',
  title: 'Host overview',
  range: { key: '1h' },
  variables: [{ name: 'host', label: 'Host', metric: 'cpu.usage', key: 'host' }],
  panels: [
    {
      id: 'cpu-now', type: 'stat', title: 'CPU busy', metric: 'cpu.usage', match: { ...host, cpu: 'total' }, agg: 'avg',
      unit: '%', thresholds: [{ value: 80, color: '#f59e0b' }, { value: 95, color: '#ef4444' }],
      layout: { x: 0, y: 0, w: 3, h: 4 },
    },
    {
      id: 'load', type: 'stat', title: 'Load (1 min)', metric: 'load.1', match: { ...host }, agg: 'avg', unit: '',
      thresholds: [], layout: { x: 3, y: 0, w: 3, h: 4 },
    },
    {
      id: 'cpu-gauge', type: 'gauge', title: 'CPU busy (gauge)', metric: '', match: {}, agg: 'avg',
      promql: `100 - avg(${rate('cpu_seconds_total', ',mode="idle"')}) * 100`,
      unit: '%', min: 0, max: 100, thresholds: [{ value: 80, color: '#f59e0b' }, { value: 95, color: '#ef4444' }],
      layout: { x: 6, y: 0, w: 3, h: 4 },
    },
    {
      id: 'notes', type: 'text', title: 'About', metric: '', match: {}, agg: 'avg', unit: '', thresholds: [],
      text: '**Host overview** of the microdash agent\'s metrics. Pick a host above.\n\nCounters (`*_total`) are shown as per-second rates over 1 minute (PromQL).',
      layout: { x: 9, y: 0, w: 3, h: 4 },
    },
    {
      id: 'cpu-cores', type: 'timeseries', title: 'CPU busy per core', metric: 'cpu.usage', match: { ...host }, agg: 'avg',
      unit: '%', thresholds: [], legend: true, layout: { x: 0, y: 4, w: 6, h: 7 },
    },
    {
      id: 'cpu-mode', type: 'timeseries', title: 'CPU time by mode', metric: '', match: {}, agg: 'avg',
      promql: `avg by (mode) (${rate('cpu_seconds_total', ',mode!="idle"')}) * 100`,
      unit: '%', thresholds: [], legend: true, layout: { x: 6, y: 4, w: 6, h: 7 },
    },
    {
      id: 'memory', type: 'timeseries', title: 'Memory', metric: 'mem.used', match: { ...host }, agg: 'avg', unit: 'B',
      thresholds: [], legend: true, queries: [{ metric: 'mem.total', match: { ...host }, agg: 'avg' }],
      layout: { x: 0, y: 11, w: 6, h: 7 },
    },
    {
      id: 'disk-util', type: 'timeseries', title: 'Disk busy (I/O time)', metric: '', match: {}, agg: 'avg',
      promql: `${rate('disk_io_time_seconds_total')} * 100`,
      unit: '%', thresholds: [], legend: true, layout: { x: 6, y: 11, w: 6, h: 7 },
    },
    {
      id: 'net-errors', type: 'timeseries', title: 'Network errors and drops per second', metric: '', match: {}, agg: 'avg',
      promql: NET_ERRORS_AND_DROPS,
      unit: '/s', thresholds: [], legend: true,
      layout: { x: 0, y: 18, w: 6, h: 7 },
    },
    {
      id: 'disk-bytes', type: 'timeseries', title: 'Disk read and written per second', metric: '', match: {}, agg: 'avg',
      promql: `sum by (device) (${rate('disk_read_bytes_total')})`,
      unit: 'B/s', thresholds: [], legend: true,
      queries: [{ metric: '', match: {}, agg: 'avg', promql: `sum by (device) (${rate('disk_written_bytes_total')})` }],
      layout: { x: 6, y: 18, w: 6, h: 7 },
    },
    {
      id: 'disk-top', type: 'topn', title: 'Busiest disks (I/O time)', metric: '', match: {}, agg: 'avg',
      promql: `${rate('disk_io_time_seconds_total')} * 100`,
      unit: '%', thresholds: [{ value: 80, color: '#f59e0b' }], topN: 5, layout: { x: 0, y: 25, w: 6, h: 6 },
    },
    {
      id: 'fs-avail', type: 'topn', title: 'Filesystems: space left', metric: 'fs.avail_bytes', match: { ...host }, agg: 'last',
      unit: 'B', thresholds: [], topN: 10, layout: { x: 6, y: 25, w: 6, h: 6 },
    },
    {
      id: 'fs-fill', type: 'timeseries', title: 'Filesystems: fill', metric: '', match: {}, agg: 'avg',
      promql: FS_FILL, unit: '%', thresholds: [{ value: 90, color: '#ef4444' }], legend: true,
      layout: { x: 0, y: 31, w: 12, h: 7 },
    },
    {
      // systemd.units: the agent's count of units by state, where systemd runs (no data elsewhere).
      id: 'systemd-failed', type: 'stat', title: 'Failed systemd units', metric: 'systemd.units',
      match: { ...host, state: 'failed' }, agg: 'last', unit: '', thresholds: [{ value: 1, color: '#ef4444' }],
      layout: { x: 0, y: 38, w: 3, h: 5 },
    },
    {
      id: 'alerts', type: 'alerts', title: 'Alerts', metric: '', match: {}, agg: 'avg', unit: '', thresholds: [],
      layout: { x: 3, y: 38, w: 9, h: 5 },
    },
  ],
}
