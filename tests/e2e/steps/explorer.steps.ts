/** The explorer and its chart (`data-testid="chart"` with `data-points` / `data-last-ts`). */
import crypto from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { Page } from '@playwright/test'
import { Given, Then, When, expect } from '../support/fixtures'
import type { World } from '../support/fixtures'

/** Puts a random marker on `window`; a reload would lose it ("the page was not reloaded"). */
async function markPage(page: Page, world: World): Promise<void> {
  if (world.pageMarker) return
  const marker = crypto.randomUUID()
  await page.evaluate((m) => {
    ;(window as unknown as { __e2eMarker?: string }).__e2eMarker = m
  }, marker)
  world.pageMarker = marker
}

When('I open the explorer', async ({ page }) => {
  await page.getByTestId('nav-explorer').click()
  await expect(page).toHaveURL(/\/explorer/)
})

When('I open the explorer at {string}', async ({ page }, path: string) => {
  await page.goto(path)
  await expect(page).toHaveURL(/\/explorer/)
})

When('I pick the metric {string}', async ({ page }, metric: string) => {
  await page.getByTestId('metric-select').selectOption(metric)
  await expect(page).toHaveURL(new RegExp(`[?&]metric=${encodeURIComponent(metric).replace(/\./g, '\\.')}(&|$)`))
})

Given('I have a live chart of {string} open in the explorer', async ({ page, world }, metric: string) => {
  await page.goto(`/explorer?metric=${encodeURIComponent(metric)}&range=live`)
  await expect(page.getByTestId('chart')).not.toHaveAttribute('data-last-ts', '')
  await markPage(page, world)
})

Then('I am on the explorer showing {string}', async ({ page }, metric: string) => {
  await expect(page).toHaveURL(/\/explorer\?/)
  await expect(page.getByTestId('metric-select')).toHaveValue(metric)
})

Then('the time range is {string}', async ({ page }, key: string) => {
  await expect(page.getByTestId('range-select')).toHaveValue(key)
})

Then('the label filter {string} is set to {string}', async ({ page }, key: string, value: string) => {
  await expect(page.getByTestId(`label-filter-${key}`)).toHaveValue(value)
})

Then('the chart shows {int} point(s)', async ({ page, world }, count: number) => {
  await expect(page.getByTestId('chart')).toHaveAttribute('data-points', String(count))
  await markPage(page, world)
})

Then(
  "within {int} second(s) the chart's newest point is that sample",
  async ({ page, world, $testInfo }, seconds: number) => {
    const sample = world.lastSample
    expect(sample?.ts, 'a previous step sent a sample with a timestamp').toBeDefined()
    const want = String(sample!.ts)
    const budgetMs = seconds * 1000
    const chart = page.getByTestId('chart')
    let seen: string | null = null
    for (;;) {
      seen = await chart.getAttribute('data-last-ts')
      if (seen === want) break
      if (performance.now() - world.lastSentAt > budgetMs) break
      await page.waitForTimeout(20)
    }
    const latency = Math.round(performance.now() - world.lastSentAt)
    $testInfo.annotations.push({ type: 'latency', description: `sample on chart ${latency} ms after its 202` })
    expect(
      seen,
      `data-last-ts should be the sample's ts ${want} within ${budgetMs} ms of the 202 (waited ${latency} ms)`,
    ).toBe(want)
  },
)

Then("the chart's newest point is that sample", async ({ page, world }) => {
  expect(world.lastSample?.ts, 'a previous step sent a sample with a timestamp').toBeDefined()
  await expect(page.getByTestId('chart')).toHaveAttribute('data-last-ts', String(world.lastSample!.ts))
})

Then('the page was not reloaded', async ({ page, world }) => {
  expect(world.pageMarker, 'a marker was put on the page earlier in the scenario').not.toBeNull()
  const marker = await page.evaluate(() => (window as unknown as { __e2eMarker?: string }).__e2eMarker ?? null)
  expect(marker, 'the window is the same one (no reload)').toBe(world.pageMarker)
})
