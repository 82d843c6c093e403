#!/usr/bin/env node
/**
 * Browser half of `make bench` section `live` (run by bench/src/live.rs): in Debian's Chromium,
 *   1. navigation → first chart painted: a fresh browser context logs in (session cookie), opens
 *      the explorer on a live chart of a metric with data, and the page itself notes the time
 *      (performance.now(), i.e. since the navigation started) of the first animation frame in
 *      which the chart element says it has drawn points (`data-points` > 0), with a few lines
 *      added before its own scripts, Chromium driven over the DevTools protocol (no Playwright);
 *   2. ingest → point painted: on one open live chart, POST one sample, then wait (polling every
 *      animation frame) until the chart's newest drawn timestamp (`data-last-ts`) is that sample's.
 *
 * Usage: node live-chart.cjs --base http://127.0.0.1:PORT --token T --metric M
 *          [--navigations 10] [--probes 100] [--gap-ms 300] [--out result.json]
 * Prints (and writes with --out) {"first_paint_ms":[…],"first_paint_detail":[{code_ms, session_ms,
 * query_ms, code_bytes, code_sent_bytes, code_files}…],"ingest_to_paint_ms":[…]}; with
 * MICRODASH_LIVE_RAW=FILE it also appends that line to FILE (the bench keeps only percentiles).
 * The chart batches repaints (at most one per 200 ms), which the second figure includes.
 */
'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const { StringDecoder } = require('node:string_decoder')
const { performance } = require('node:perf_hooks')
const { chromium } = require('@playwright/test')

const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium'
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
 * The Chrome DevTools Protocol over a pipe (`--remote-debugging-pipe`: JSON messages separated
 * by NUL bytes, commands on the browser's fd 3, answers and events on its fd 4). The first-chart
 * measurement drives Chromium with it rather than with Playwright: Playwright adds its own
 * isolated world to every document it sees (an empty script evaluated in a second context,
 * made on the renderer's main thread while the navigation commits, 8–25 ms in traces) and
 * evaluates its ~340 KB injected script in the page to poll; both land on the main thread a
 * first chart waits for, and no user's browser runs them.
 */
class Cdp {
  constructor(child) {
    this.out = child.stdio[3]
    this.nextId = 1
    this.waiting = new Map()
    this.listeners = new Set()
    this.exited = new Promise((resolve) => child.once('exit', resolve))
    // A browser that exits (or never starts) fails what is still waiting instead of hanging it.
    void this.exited.then((code) => {
      for (const w of this.waiting.values()) w.reject(new Error(`${w.method}: Chromium exited (${code})`))
      this.waiting.clear()
    })
    // A character of several bytes may be split between two chunks: the decoder keeps its start.
    const decoder = new StringDecoder('utf8')
    let buffered = ''
    child.stdio[4].on('data', (chunk) => {
      buffered += decoder.write(chunk)
      let end
      while ((end = buffered.indexOf('\0')) >= 0) {
        const message = JSON.parse(buffered.slice(0, end))
        buffered = buffered.slice(end + 1)
        if (message.id !== undefined) {
          const w = this.waiting.get(message.id)
          this.waiting.delete(message.id)
          if (message.error) w?.reject(new Error(`${w.method}: ${message.error.message}`))
          else w?.resolve(message.result)
        } else {
          for (const listener of this.listeners) listener(message)
        }
      }
    })
  }

  send(method, params = {}, sessionId = undefined) {
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, method })
      this.out.write(JSON.stringify({ id, method, params, sessionId }) + '\0')
    })
  }

  /** The first event `match` accepts, within `ms`. */
  event(match, ms, what) {
    return new Promise((resolve, reject) => {
      const listener = (message) => {
        const value = match(message)
        if (value === undefined) return
        clearTimeout(timer)
        this.listeners.delete(listener)
        resolve(value)
      }
      const timer = setTimeout(() => {
        this.listeners.delete(listener)
        reject(new Error(`${what}: nothing within ${ms} ms`))
      }, ms)
      this.listeners.add(listener)
    })
  }
}

/** Chromium driven over a pipe; `close` ends it and removes its profile folder. */
function launchCdp() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'live-chart-'))
  const child = spawn(
    CHROMIUM_PATH,
    [...CHROMIUM_ARGS, '--remote-debugging-pipe', `--user-data-dir=${profile}`, 'about:blank'],
    { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] },
  )
  const cdp = new Cdp(child)
  const close = async () => {
    void cdp.send('Browser.close').catch(() => undefined)
    await Promise.race([cdp.exited, new Promise((resolve) => setTimeout(resolve, 5000))])
    child.kill('SIGKILL')
    fs.rmSync(profile, { recursive: true, force: true })
  }
  return { cdp, close }
}

/** The session cookie of `token`, as CDP's `Storage.setCookies` takes it. */
async function sessionCookie(args) {
  const r = await fetch(`${args.base}/api/v1/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: args.token }),
  })
  if (!r.ok) throw new Error(`login answered ${r.status}: ${await r.text()}`)
  const [pair, ...attributes] = (r.headers.get('set-cookie') ?? '').split(';').map((p) => p.trim())
  const eq = pair.indexOf('=')
  if (eq <= 0) throw new Error('login set no cookie')
  const has = (name) => attributes.some((a) => a.toLowerCase() === name)
  return { name: pair.slice(0, eq), value: pair.slice(eq + 1), url: args.base, httpOnly: has('httponly'), secure: has('secure') }
}

/** Runs in the page before its own scripts: the first animation frame with points drawn. */
const PAINT_PROBE = `(() => {
  const tick = () => {
    const el = document.querySelector('[data-testid="chart"]')
    if (el && Number(el.getAttribute('data-points')) > 0) window.__microdashPainted(String(performance.now()))
    else requestAnimationFrame(tick)
  }
  requestAnimationFrame(tick)
})()`

/** Where the time went, from the page's resource timings up to `paintedAt`. */
function paintDetail(paintedAt) {
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
}

/**
 * ms from the start of navigation until the chart has painted points, measured by the page
 * (a few lines added before its own scripts check the chart every animation frame), and where
 * that time went: when the code (JS and CSS), the session check and the first query had
 * arrived, and the code's size as sent and unpacked. Each navigation in a fresh browser
 * context (cold cache), logged in by the session cookie, 1280×800.
 */
async function firstPaint(cdp, args) {
  const { browserContextId } = await cdp.send('Target.createBrowserContext')
  try {
    await cdp.send('Storage.setCookies', { cookies: [await sessionCookie(args)], browserContextId })
    const { targetId } = await cdp.send('Target.createTarget', { url: 'about:blank', browserContextId })
    const { sessionId } = await cdp.send('Target.attachToTarget', { targetId, flatten: true })
    const viewport = { width: 1280, height: 800, deviceScaleFactor: 1, mobile: false }
    await cdp.send('Emulation.setDeviceMetricsOverride', viewport, sessionId)
    // A binding reaches only inspected contexts, and a script for new documents is added only
    // with the Page domain on.
    await cdp.send('Runtime.enable', {}, sessionId)
    await cdp.send('Page.enable', {}, sessionId)
    await cdp.send('Runtime.addBinding', { name: '__microdashPainted' }, sessionId)
    await cdp.send('Page.addScriptToEvaluateOnNewDocument', { source: PAINT_PROBE }, sessionId)
    const painted = cdp.event(
      (m) => (m.sessionId === sessionId && m.method === 'Runtime.bindingCalled' ? Number(m.params.payload) : undefined),
      30_000,
      'the chart painted',
    )
    const navigated = await cdp.send('Page.navigate', { url: args.base + chartUrl(args.metric) }, sessionId)
    if (navigated.errorText) throw new Error(`navigating: ${navigated.errorText}`)
    const paintedAt = await painted
    const { result, exceptionDetails } = await cdp.send(
      'Runtime.evaluate',
      { expression: `(${paintDetail})(${paintedAt})`, returnByValue: true },
      sessionId,
    )
    if (exceptionDetails) throw new Error(`reading the timings: ${exceptionDetails.text}`)
    return { painted: paintedAt, ...result.value }
  } finally {
    await cdp.send('Target.disposeBrowserContext', { browserContextId })
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
  const result = { first_paint_ms: [], first_paint_detail: [], ingest_to_paint_ms: [] }
  if (args.navigations > 0) {
    const { cdp, close } = launchCdp()
    try {
      for (let i = 0; i < args.navigations; i++) {
        const { painted, ...detail } = await firstPaint(cdp, args)
        result.first_paint_ms.push(painted)
        result.first_paint_detail.push(detail)
      }
    } finally {
      await close()
    }
  }
  // Playwright only for the probes on an open page (not first-load sensitive).
  if (args.probes > 0) {
    const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS })
    try {
      result.ingest_to_paint_ms = await ingestToPaint(browser, args)
    } finally {
      await browser.close()
    }
  }
  const text = JSON.stringify(result)
  if (args.out) fs.writeFileSync(args.out, text)
  if (process.env.MICRODASH_LIVE_RAW) fs.appendFileSync(process.env.MICRODASH_LIVE_RAW, text + '\n')
  console.log(text)
}

main().catch((e) => {
  console.error(e instanceof Error ? e.stack : e)
  process.exit(1)
})
