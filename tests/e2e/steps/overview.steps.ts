/** The overview (hosts and their latest values) and the metric list. */
import type { Page } from '@playwright/test'
import { Then, expect } from '../support/fixtures'

async function onOverview(page: Page): Promise<void> {
  if (new URL(page.url()).pathname !== '/') await page.getByTestId('nav-overview').click()
  await expect(page).toHaveURL(/\/$/)
}

const row = (page: Page, metric: string) => page.locator(`[data-testid="host-row"][data-metric="${metric}"]`)
const card = (page: Page, host: string) => page.locator(`[data-testid="host-card"][data-host="${host}"]`)

Then('the overview shows the metric {string} for host {string}', async ({ page }, metric: string, host: string) => {
  await onOverview(page)
  await expect(card(page, host).locator(`[data-testid="host-row"][data-metric="${metric}"]`)).toBeVisible()
})

Then('the overview does not show the metric {string}', async ({ page }, metric: string) => {
  await onOverview(page)
  await expect(row(page, metric)).toHaveCount(0)
  await expect(page.locator('main')).not.toContainText(metric)
})

Then('the overview does not show the host {string}', async ({ page }, host: string) => {
  await onOverview(page)
  await expect(card(page, host)).toHaveCount(0)
  await expect(page.locator('main')).not.toContainText(host)
})

Then('the metric list offers {string}', async ({ page }, metric: string) => {
  await expect(page.getByTestId('metric-select').locator(`option[value="${metric}"]`)).toHaveCount(1)
})

Then('the metric list does not offer {string}', async ({ page }, metric: string) => {
  const select = page.getByTestId('metric-select')
  // Only meaningful once the list has loaded: it is enabled and has real options.
  await expect(select).toBeEnabled()
  await expect(select.locator(`option[value="${metric}"]`)).toHaveCount(0)
  await expect(select).not.toContainText(metric)
})
