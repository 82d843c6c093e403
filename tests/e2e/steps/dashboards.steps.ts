/** Dashboards: create, add a panel, save, reload. */
import type { Page } from '@playwright/test'
import { Then, When, expect } from '../support/fixtures'

const panel = (page: Page, title: string) =>
  page.getByTestId('panel').filter({ has: page.getByTestId('panel-heading').getByText(title, { exact: true }) })

When('I go to the list of dashboards', async ({ page }) => {
  await page.getByTestId('nav-dashboards').click()
  await expect(page).toHaveURL(/\/dashboards$/)
})

When('I create the dashboard {string}', async ({ page }, title: string) => {
  await page.getByTestId('nav-dashboards').click()
  await page.getByTestId('dashboard-title-input').fill(title)
  await page.getByTestId('dashboard-create').click()
})

Then('I am on the dashboard {string}', async ({ page }, name: string) => {
  await expect(page).toHaveURL(new RegExp(`/dashboards/${name}$`))
  await expect(page.getByTestId('panel-add')).toBeVisible()
})

When(
  'I add a panel {string} of the metric {string} with unit {string}',
  async ({ page }, title: string, metric: string, unit: string) => {
    await page.getByTestId('panel-add').click()
    const editor = page.getByTestId('panel-editor')
    await editor.getByTestId('panel-title').fill(title)
    await editor.getByTestId('metric-select').selectOption(metric)
    await editor.getByTestId('panel-unit').fill(unit)
    await editor.getByTestId('panel-save').click()
    await expect(editor).toHaveCount(0)
    await expect(panel(page, title)).toBeVisible()
  },
)

Then('the dashboard shows unsaved changes', async ({ page }) => {
  await expect(page.getByTestId('dashboard-dirty')).toBeVisible()
  await expect(page.getByTestId('dashboard-save')).toBeEnabled()
})

When('I save the dashboard', async ({ page }) => {
  await page.getByTestId('dashboard-save').click()
})

Then('the dashboard has no unsaved changes', async ({ page }) => {
  await expect(page.getByTestId('dashboard-dirty')).toHaveCount(0)
  await expect(page.getByTestId('dashboard-save')).toBeDisabled()
  await expect(page.getByRole('alert')).toHaveCount(0)
})

When('I reload the page', async ({ page }) => {
  await page.reload()
})

Then('the dashboard {string} has exactly {int} panel(s)', async ({ page }, name: string, count: number) => {
  await expect(page).toHaveURL(new RegExp(`/dashboards/${name}$`))
  await expect(page.getByTestId('panel-add')).toBeVisible()
  await expect(page.getByTestId('panel')).toHaveCount(count)
  await expect(page.getByTestId('dashboard-dirty')).toHaveCount(0)
})

Then('the panel {string} shows {int} point(s)', async ({ page }, title: string, count: number) => {
  await expect(panel(page, title).getByTestId('chart')).toHaveAttribute('data-points', String(count))
})

Then('the list shows the dashboard {string} with {int} panel(s)', async ({ page }, name: string, count: number) => {
  const item = page.locator(`[data-testid="dashboard-item"][data-name="${name}"]`)
  await expect(item).toBeVisible()
  // The list says "name · N panels" (also for 1).
  await expect(item).toContainText(new RegExp(`${name} · ${count} panels?`))
})
