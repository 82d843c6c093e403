/**
 * The built-in "Host overview" dashboard for the agent's metrics (agent/README.md), with a
 * `$host` variable from the `host` label of `cpu.usage`. The /api/v1/query API has no rate,
 * so the counters (`*_total`) are drawn as they are sent: cumulative, a steeper line is more.
 */
import type { Dashboard } from '@/api/types'

const host = { host: '$host' }

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
      id: 'cpu-gauge', type: 'gauge', title: 'CPU busy (gauge)', metric: 'cpu.usage', match: { ...host, cpu: 'total' }, agg: 'avg',
      unit: '%', min: 0, max: 100, thresholds: [{ value: 80, color: '#f59e0b' }, { value: 95, color: '#ef4444' }],
      layout: { x: 6, y: 0, w: 3, h: 4 },
    },
    {
      id: 'notes', type: 'text', title: 'About', metric: '', match: {}, agg: 'avg', unit: '', thresholds: [],
      text: '**Host overview** of the microdash agent\'s metrics. Pick a host above.\n\nCounters (`*_total`) are cumulative: a steeper line means more.',
      layout: { x: 9, y: 0, w: 3, h: 4 },
    },
    {
      id: 'cpu-cores', type: 'timeseries', title: 'CPU busy per core', metric: 'cpu.usage', match: { ...host }, agg: 'avg',
      unit: '%', thresholds: [], legend: true, layout: { x: 0, y: 4, w: 6, h: 7 },
    },
    {
      id: 'cpu-mode', type: 'timeseries', title: 'CPU time by mode (cumulative)', metric: 'cpu.seconds_total',
      match: { ...host, cpu: '0' }, agg: 'max', unit: 's', thresholds: [], legend: true, layout: { x: 6, y: 4, w: 6, h: 7 },
    },
    {
      id: 'memory', type: 'timeseries', title: 'Memory', metric: 'mem.used', match: { ...host }, agg: 'avg', unit: 'B',
      thresholds: [], legend: true, queries: [{ metric: 'mem.total', match: { ...host }, agg: 'avg' }],
      layout: { x: 0, y: 11, w: 6, h: 7 },
    },
    {
      id: 'disk-io', type: 'timeseries', title: 'Disk I/O in flight', metric: 'disk.io_now', match: { ...host }, agg: 'max',
      unit: '', thresholds: [], legend: true, layout: { x: 6, y: 11, w: 6, h: 7 },
    },
    {
      id: 'net-errors', type: 'timeseries', title: 'Network errors and drops (cumulative)', metric: 'net.receive_errs_total',
      match: { ...host }, agg: 'max', unit: '', thresholds: [], legend: true,
      queries: [
        { metric: 'net.transmit_errs_total', match: { ...host }, agg: 'max' },
        { metric: 'net.receive_drop_total', match: { ...host }, agg: 'max' },
        { metric: 'net.transmit_drop_total', match: { ...host }, agg: 'max' },
      ],
      layout: { x: 0, y: 18, w: 6, h: 7 },
    },
    {
      id: 'fs-avail', type: 'topn', title: 'Filesystems: space left', metric: 'fs.avail_bytes', match: { ...host }, agg: 'last',
      unit: 'B', thresholds: [], topN: 10, layout: { x: 6, y: 18, w: 6, h: 7 },
    },
    {
      id: 'alerts', type: 'alerts', title: 'Alerts', metric: '', match: {}, agg: 'avg', unit: '', thresholds: [],
      layout: { x: 0, y: 25, w: 12, h: 5 },
    },
  ],
}
