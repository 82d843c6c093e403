/**
 * Screenshots of the main pages for docs/screenshots/, taken from a real server fed with
 * plausible host metrics (15 minutes of history, then a live feed so charts move).
 *
 *   npm run screenshots        (see playwright.screenshots.config.ts)
 *
 * Writes PNGs to docs/screenshots/ (MICRODASH_SCREENSHOT_DIR overrides). Not part of `npm test`.
 */
import fs from 'node:fs'
import path from 'node:path'
import { expect, test, type Browser, type BrowserContext, type Page } from '@playwright/test'
import { SCREENSHOT_DIR } from './support/paths'
import { MicrodashServer, type Sample } from './support/server'

const HOSTS = ['web-1', 'web-2', 'db-1'] as const
const HISTORY_MS = 15 * 60_000
const STEP_MS = 10_000

/** A smooth, deterministic value per metric/host/time: readable charts, no flat lines. */
const METRICS: Record<string, (t: number, h: number) => number> = {
  'cpu.usage': (t, h) => clamp(35 + h * 12 + 18 * Math.sin(t / 97_000 + h) + 9 * Math.sin(t / 23_000 + 2 * h), 1, 99),
  'mem.used_pct': (t, h) => clamp(52 + h * 9 + 4 * Math.sin(t / 300_000 + h), 1, 99),
  'load.1m': (t, h) => Math.max(0.05, 0.8 + h * 0.6 + 0.5 * Math.sin(t / 61_000 + h * 3)),
  'net.rx_bytes': (t, h) => Math.max(0, 2.5e6 + h * 1e6 + 1.5e6 * Math.sin(t / 45_000 + h)),
  'disk.used_pct': (t, h) => 61 + h * 7 + (t % 3_600_000) / 3_600_000,
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v))
}

function round(v: number): number {
  return Math.round(v * 100) / 100
}

function samplesAt(ts: number): Sample[] {
  const out: Sample[] = []
  HOSTS.forEach((host, h) => {
    for (const [metric, f] of Object.entries(METRICS)) out.push({ metric, value: round(f(ts, h)), ts, labels: { host } })
  })
  return out
}

let server: MicrodashServer
let feeder: ReturnType<typeof setInterval> | null = null

test.beforeAll(async () => {
  server = await MicrodashServer.start()
  const now = Date.now()
  const history: Sample[] = []
  for (let ts = now - HISTORY_MS; ts <= now; ts += STEP_MS) history.push(...samplesAt(ts))
  await server.ingestBulk(server.defaultToken, history)
  // Keep the charts moving while pages are open: a sample per series every second.
  feeder = setInterval(() => {
    void server.ingestBulk(server.defaultToken, samplesAt(Date.now())).catch(() => undefined)
  }, 1000)
  const saved = await server.api('PUT', '/api/v1/dashboards/web-servers', {
    token: server.defaultToken,
    body: {
      name: 'web-servers',
      title: 'Web servers',
      panels: [
        { id: 'p-cpu', title: 'CPU busy', metric: 'cpu.usage', match: {}, agg: 'avg', unit: '%', thresholds: [{ value: 80, color: '#ef4444' }] },
        { id: 'p-mem', title: 'Memory used', metric: 'mem.used_pct', match: {}, agg: 'avg', unit: '%', thresholds: [{ value: 90, color: '#f59e0b' }] },
        { id: 'p-load', title: 'Load (1 min)', metric: 'load.1m', match: { host: 'web-1' }, agg: 'avg', unit: '', thresholds: [] },
        { id: 'p-net', title: 'Network received', metric: 'net.rx_bytes', match: {}, agg: 'avg', unit: 'B', thresholds: [] },
      ],
    },
  })
  expect(saved.status, JSON.stringify(saved.body)).toBeLessThan(300)
})

test.afterAll(async () => {
  if (feeder) clearInterval(feeder)
  await server?.dispose()
})

async function newContext(browser: Browser, opts: { phone?: boolean; dark?: boolean } = {}): Promise<BrowserContext> {
  const context = await browser.newContext({
    baseURL: server.baseURL,
    viewport: opts.phone ? { width: 390, height: 844 } : { width: 1280, height: 800 },
    deviceScaleFactor: opts.phone ? 2 : 1,
    isMobile: !!opts.phone,
    hasTouch: !!opts.phone,
    colorScheme: opts.dark ? 'dark' : 'light',
  })
  // An explicit theme choice, as the toggle would store it.
  await context.addInitScript((theme) => localStorage.setItem('microdash.theme', theme), opts.dark ? 'dark' : 'light')
  return context
}

async function logIn(page: Page): Promise<void> {
  await page.goto('/login')
  await page.getByTestId('login-token').fill(server.defaultToken)
  await page.getByTestId('login-submit').click()
  await expect(page.getByTestId('tenant-name')).toBeVisible()
  await expect(page.getByTestId('live-indicator')).toHaveAttribute('data-state', 'live')
}

/** Wait until every chart on the page has painted data and then moved at least once. */
async function chartsMoving(page: Page): Promise<void> {
  const charts = page.getByTestId('chart')
  await expect(charts.first()).toBeVisible()
  const count = await charts.count()
  for (let i = 0; i < count; i++) await expect(charts.nth(i)).not.toHaveAttribute('data-last-ts', '')
  const before = await charts.first().getAttribute('data-last-ts')
  await expect(charts.first()).not.toHaveAttribute('data-last-ts', before ?? '', { timeout: 10_000 })
}

async function shot(page: Page, name: string, fullPage = false): Promise<void> {
  // Let the batched repaint and any CSS transition settle.
  await page.waitForTimeout(400)
  const file = path.join(SCREENSHOT_DIR, `${name}.png`)
  await page.screenshot({ path: file, fullPage, animations: 'disabled', caret: 'hide' })
  console.log(`wrote ${path.relative(process.cwd(), file)}`)
}

test('screenshots of the main pages', async ({ browser }) => {
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true })

  await test.step('light, desktop', async () => {
    const context = await newContext(browser)
    const page = await context.newPage()
    await page.goto('/login')
    await expect(page.getByTestId('login-token')).toBeVisible()
    await shot(page, 'login')

    await logIn(page)
    await expect(page.getByTestId('host-card')).toHaveCount(HOSTS.length)
    await shot(page, 'overview')

    await page.goto('/explorer?metric=cpu.usage&range=live')
    await chartsMoving(page)
    await shot(page, 'explorer-live')

    await page.goto('/dashboards/web-servers')
    await expect(page.getByTestId('panel')).toHaveCount(4)
    await chartsMoving(page)
    await shot(page, 'dashboard', true)

    await page.goto('/alerts')
    await expect(page.getByRole('heading', { name: 'Alerts' })).toBeVisible()
    await expect(page.getByText('Loading alerts…')).toHaveCount(0)
    await shot(page, 'alerts')
    await context.close()
  })

  await test.step('dark mode', async () => {
    const context = await newContext(browser, { dark: true })
    const page = await context.newPage()
    await logIn(page)
    await expect(page.getByTestId('host-card')).toHaveCount(HOSTS.length)
    await shot(page, 'dark-overview')
    await page.goto('/dashboards/web-servers')
    await expect(page.getByTestId('panel')).toHaveCount(4)
    await chartsMoving(page)
    await shot(page, 'dark-dashboard', true)
    await context.close()
  })

  await test.step('phone width', async () => {
    const context = await newContext(browser, { phone: true })
    const page = await context.newPage()
    await logIn(page)
    await expect(page.getByTestId('host-card')).toHaveCount(HOSTS.length)
    await shot(page, 'phone-overview')
    await page.getByTestId('menu-toggle').click()
    await expect(page.locator('#mobile-nav')).toBeVisible()
    await shot(page, 'phone-menu')
    await page.goto('/explorer?metric=cpu.usage&range=live')
    await chartsMoving(page)
    await shot(page, 'phone-explorer', true)
    await context.close()
  })
})
