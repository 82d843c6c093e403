#!/usr/bin/env node
/**
 * Browser half of `make bench` section `live` (run by bench/src/live.rs): in Debian's Chromium,
 *   1. navigation → first chart painted: a fresh browser context logs in (session cookie), opens
 *      the explorer on a live chart of a metric with data, and the page itself notes the time
 *      (performance.now(), i.e. since the navigation started) of the first animation frame in
 *      which the chart element says it has drawn points (`data-points` > 0);
 *   2. ingest → point painted: on one open live chart, POST one sample, then wait (polling every
 *      animation frame) until the chart's newest drawn timestamp (`data-last-ts`) is that sample's.
 *
 * Usage: node live-chart.cjs --base http://127.0.0.1:PORT --token T --metric M
 *          [--navigations 10] [--probes 100] [--gap-ms 300] [--out result.json]
 * Prints (and writes with --out) {"first_paint_ms":[…],"first_paint_detail":[{code_ms, session_ms,
 * query_ms, code_bytes, code_sent_bytes, code_files}…],"ingest_to_paint_ms":[…]}.
 * The chart batches repaints (at most one per 200 ms), which the second figure includes.
 */
'use strict'
const fs = require('node:fs')
const { performance } = require('node:perf_hooks')
const { chromium } = require('@playwright/test')

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
]

function parseArgs(argv) {
  const args = { navigations: 10, probes: 100, gapMs: 300, out: null }
  for (let i = 2; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase())
    const value = argv[i + 1]
    args[key] = ['navigations', 'probes', 'gapMs'].includes(key) ? Number(value) : value
  }
  for (const required of ['base', 'token', 'metric']) {
    if (!args[required]) throw new Error(`--${required} is required`)
  }
  return args
}

async function loggedInContext(browser, args) {
  const context = await browser.newContext({ baseURL: args.base, viewport: { width: 1280, height: 800 } })
  const r = await context.request.post('/api/v1/session', { data: { token: args.token } })
  if (!r.ok()) throw new Error(`login answered ${r.status()}: ${await r.text()}`)
  return context
}

const chartUrl = (metric) => `/explorer?metric=${encodeURIComponent(metric)}&range=live`

/**
 * ms from the start of navigation until the chart has painted points, measured by the page,
 * and where that time went (the page's resource timings): when the code (JS and CSS), the
 * session check and the first query had arrived, and the code's size as sent and unpacked.
 */
async function firstPaint(browser, args) {
  const context = await loggedInContext(browser, args)
  try {
    const page = await context.newPage()
    await page.goto(chartUrl(args.metric), { waitUntil: 'commit' })
    const handle = await page.waitForFunction(
      () => {
        const el = document.querySelector('[data-testid="chart"]')
        return el && Number(el.getAttribute('data-points')) > 0 ? performance.now() : null
      },
      null,
      { polling: 'raf', timeout: 30_000 },
    )
    const painted = await handle.jsonValue()
    const detail = await page.evaluate((paintedAt) => {
      const before = performance.getEntriesByType('resource').filter((r) => r.responseEnd <= paintedAt)
      const path = (r) => new URL(r.name).pathname
      const code = before.filter((r) => /\.(js|css)$/.test(path(r)))
      const end = (list) => (list.length ? Math.max(...list.map((r) => r.responseEnd)) : null)
      const first = (prefix) => before.find((r) => path(r) === prefix)?.responseEnd ?? null
      return {
        code_ms: end(code),
        session_ms: first('/api/v1/session'),
        query_ms: first('/api/v1/query'),
        code_bytes: code.reduce((n, r) => n + r.decodedBodySize, 0),
        code_sent_bytes: code.reduce((n, r) => n + r.encodedBodySize, 0),
        code_files: code.length,
      }
    }, painted)
    return { painted, ...detail }
  } finally {
    await context.close()
  }
}

async function ingestToPaint(browser, args) {
  const context = await loggedInContext(browser, args)
  const latencies = []
  try {
    const page = await context.newPage()
    await page.goto(chartUrl(args.metric))
    await page.waitForFunction(
      () => Number(document.querySelector('[data-testid="chart"]')?.getAttribute('data-points')) > 0,
      null,
      { polling: 'raf', timeout: 30_000 },
    )
    // The stream is open once the header says so.
    await page.waitForSelector('[data-testid="live-indicator"][data-state="live"]', { timeout: 30_000 })
    let lastTs = 0
    for (let i = 0; i < args.probes; i++) {
      const ts = Math.max(Date.now(), lastTs + 1)
      lastTs = ts
      const started = performance.now()
      const waiting = page.waitForFunction(
        (want) => document.querySelector('[data-testid="chart"]')?.getAttribute('data-last-ts') === want,
        String(ts),
        { polling: 'raf', timeout: 10_000 },
      )
      const r = await fetch(`${args.base}/api/v1/metrics`, {
        method: 'POST',
        headers: { authorization: `Bearer ${args.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ metric: args.metric, value: i % 100, ts, labels: { host: 'bench' } }),
      })
      if (r.status !== 202) throw new Error(`ingest answered ${r.status}: ${await r.text()}`)
      await waiting
      latencies.push(performance.now() - started)
      // Spread the probes over the chart's repaint cycle instead of riding one batch.
      await new Promise((resolve) => setTimeout(resolve, args.gapMs + Math.random() * 200))
    }
  } finally {
    await context.close()
  }
  return latencies
}

async function main() {
  const args = parseArgs(process.argv)
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
  })
  try {
    const result = { first_paint_ms: [], first_paint_detail: [], ingest_to_paint_ms: [] }
    for (let i = 0; i < args.navigations; i++) {
      const { painted, ...detail } = await firstPaint(browser, args)
      result.first_paint_ms.push(painted)
      result.first_paint_detail.push(detail)
    }
    if (args.probes > 0) result.ingest_to_paint_ms = await ingestToPaint(browser, args)
    const text = JSON.stringify(result)
    if (args.out) fs.writeFileSync(args.out, text)
    console.log(text)
  } finally {
    await browser.close()
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.stack : e)
  process.exit(1)
})
