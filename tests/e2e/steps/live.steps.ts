/** The live stream's indicator across a server restart. */
import type { Page, TestInfo } from '@playwright/test'
import { Then, When, expect } from '../support/fixtures'
import { MicrodashServer, type StopMode } from '../support/server'
import type { Target } from '../support/fixtures'

type Recorder = { __e2eLiveStates?: string[] }

/** Record every `data-state` the live indicator takes from now on (transient ones too). */
async function recordLiveStates(page: Page): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as Recorder
    if (w.__e2eLiveStates) return
    const el = document.querySelector<HTMLElement>('[data-testid="live-indicator"]')
    const states: string[] = [el?.dataset.state ?? '(none)']
    w.__e2eLiveStates = states
    new MutationObserver((mutations) => {
      for (const m of mutations) {
        const t = m.target as HTMLElement
        if (t.dataset?.testid !== 'live-indicator') continue
        const s = t.dataset.state ?? '(none)'
        if (states[states.length - 1] !== s) states.push(s)
      }
    }).observe(document.body, { subtree: true, attributes: true, attributeFilter: ['data-state'] })
  })
}

async function restart(page: Page, target: Target, mode: StopMode, info: TestInfo): Promise<void> {
  if (!(target instanceof MicrodashServer)) throw new Error('restarting needs a server process of this run, not the Compose stack')
  const server = target
  await recordLiveStates(page)
  const address = server.address
  const result = await server.restart(mode)
  expect(server.address, 'the server came back on the same address').toBe(address)
  // A graceful stop that still needs SIGKILL (see README, "Fixed issues") is a warning;
  // E2E_STRICT_SHUTDOWN=1 turns it into a failure.
  if (process.env.E2E_STRICT_SHUTDOWN === '1') {
    expect(result.forced, `microdash should exit on SIGTERM within the grace period (took ${result.ms} ms)`).toBe(false)
  }
  info.annotations.push({
    type: 'restart',
    description: `${mode} stop took ${result.ms} ms${result.forced ? ' (SIGTERM hung: SIGKILLed after the grace period)' : ''}`,
  })
}

When('the server restarts on the same address with the same data', async ({ page, server, $testInfo }) => {
  await restart(page, server, 'graceful', $testInfo)
})

When(
  'the server is killed and started again on the same address with the same data',
  async ({ page, server, $testInfo }) => {
    await restart(page, server, 'kill', $testInfo)
  },
)

Then(
  'the live indicator went to {string} and then back to {string}',
  async ({ page }, first: string, then: string) => {
    const states = () => page.evaluate(() => (window as unknown as Recorder).__e2eLiveStates ?? [])
    await expect
      .poll(
        async () => {
          const s = await states()
          const i = s.indexOf(first)
          return i >= 0 && s.indexOf(then, i + 1) > i
        },
        { message: `the indicator should go "${first}" then "${then}"`, timeout: 30_000, intervals: [100] },
      )
      .toBe(true)
    await expect(page.getByTestId('live-indicator')).toHaveAttribute('data-state', then)
  },
)

const STREAM_URL = (url: URL) => url.pathname === '/api/v1/stream'
/** Stream requests refused while the stream was unreachable, per page. */
const refusedStreams = new WeakMap<Page, number>()

// Only the stream: the chart and the session stay reachable, so what is tested is the resume.
When('the browser can no longer reach the live stream', async ({ page }) => {
  await recordLiveStates(page)
  refusedStreams.set(page, 0)
  await page.route(STREAM_URL, async (route) => {
    refusedStreams.set(page, (refusedStreams.get(page) ?? 0) + 1)
    await route.abort('internetdisconnected')
  })
})

When('the browser can reach the live stream again', async ({ page }) => {
  // Proof that the stream was cut: the browser's retry (about a second after the drop) was refused.
  await expect
    .poll(() => refusedStreams.get(page) ?? 0, { message: 'the browser tried to reconnect while it could not', timeout: 15_000 })
    .toBeGreaterThan(0)
  await page.unroute(STREAM_URL)
})
