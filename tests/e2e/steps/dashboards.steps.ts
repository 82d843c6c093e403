/** Dashboards: create, add a panel, save, reload. */
import type { Locator, Page } from '@playwright/test'
import { Then, When, expect } from '../support/fixtures'

const panel = (page: Page, title: string) =>
  page.getByTestId('panel').filter({ has: page.getByTestId('panel-heading').getByText(title, { exact: true }) })

/** The panel editor's metric field autocompletes; typing a whole name and leaving it picks it. */
async function pickMetric(editor: Locator, metric: string): Promise<void> {
  const input = editor.getByTestId('metric-input').first()
  await input.fill(metric)
  await input.blur()
}

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
    await pickMetric(editor, metric)
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

Then('the panel {string} draws points', async ({ page }, title: string) => {
  await expect
    .poll(async () => Number(await panel(page, title).getByTestId('chart').getAttribute('data-points')), { timeout: 10_000 })
    .toBeGreaterThan(0)
})

Then('the panel {string} shows its PromQL for host {string}', async ({ page }, title: string, host: string) => {
  await expect(panel(page, title).getByTestId('panel-query')).toContainText(`rate(cpu_seconds_total{host="${host}"`)
})

Then('the list shows the dashboard {string} with {int} panel(s)', async ({ page }, name: string, count: number) => {
  const item = page.locator(`[data-testid="dashboard-item"][data-name="${name}"]`)
  await expect(item).toBeVisible()
  // The list says "name · N panels" (also for 1).
  await expect(item).toContainText(new RegExp(`${name} · ${count} panels?`))
})

// ---- the builder: widget types, the grid, variables ----

const gridItem = (page: Page, title: string) => page.locator('.vgl-item').filter({ has: panel(page, title) })

async function layoutOf(page: Page, title: string): Promise<number[]> {
  const s = await panel(page, title).getAttribute('data-layout')
  return (s ?? '').split(',').map(Number)
}

/** A panel's box relative to the grid (the badges above it come and go). */
async function boxInGrid(page: Page, title: string) {
  const g = (await page.getByTestId('dashboard-grid').boundingBox())!
  const b = (await panel(page, title).boundingBox())!
  return { x: b.x - g.x, y: b.y - g.y, width: b.width, height: b.height }
}

/** Width of one grid column and height of one row (with the margin), in px. */
async function cell(page: Page): Promise<{ col: number; row: number }> {
  const box = (await page.getByTestId('dashboard-grid').boundingBox())!
  // 12 columns with 10 px margins around each; rows are 40 px + 10 px margin.
  return { col: (box.width - 10) / 12, row: 50 }
}

async function addPanel(page: Page, type: string, title: string, fill: (editor: Locator) => Promise<void>) {
  await page.getByTestId('panel-add').click()
  const editor = page.getByTestId('panel-editor')
  await editor.getByTestId('panel-type').selectOption({ label: type })
  await editor.getByTestId('panel-title').fill(title)
  await fill(editor)
  await editor.getByTestId('panel-save').click()
  await expect(editor).toHaveCount(0)
  await expect(panel(page, title)).toBeVisible()
}

When('I add a {string} panel {string} of the metric {string}', async ({ page }, type: string, title: string, metric: string) => {
  await addPanel(page, type, title, async (editor) => {
    await pickMetric(editor, metric)
  })
})

When(
  'I add a {string} panel {string} of the metric {string} with host {string}',
  async ({ page }, type: string, title: string, metric: string, host: string) => {
    await addPanel(page, type, title, async (editor) => {
      await pickMetric(editor, metric)
      await editor.getByTestId('label-filter-host').first().selectOption(host)
    })
  },
)

When('I add a text panel {string} saying {string}', async ({ page }, title: string, text: string) => {
  await addPanel(page, 'Text', title, async (editor) => {
    await editor.getByTestId('panel-text').fill(text)
    // The live preview renders it before it is added.
    await expect(editor.getByTestId('panel-preview').locator('strong')).toBeVisible()
  })
})

Then('the panel {string} shows {string} in bold', async ({ page }, title: string, text: string) => {
  await expect(panel(page, title).locator('strong')).toHaveText(text)
})

Then('the stat {string} shows {int}', async ({ page }, title: string, value: number) => {
  await expect(panel(page, title).getByTestId('widget-stat')).toHaveAttribute('data-value', String(value))
  await expect(panel(page, title).getByTestId('stat-value')).toContainText(String(value))
})

When('I drag the panel {string} {int} columns to the right with the mouse', async ({ page }, title: string, cols: number) => {
  const { col } = await cell(page)
  // hover() waits until the handle stands still (grid items glide into place).
  const grip = panel(page, title).getByTestId('panel-drag')
  await grip.hover()
  const handle = (await grip.boundingBox())!
  const x = handle.x + handle.width / 2
  const y = handle.y + handle.height / 2
  await page.mouse.move(x, y)
  await page.mouse.down()
  await page.mouse.move(x + (cols * col) / 2, y, { steps: 8 })
  await page.mouse.move(x + cols * col, y, { steps: 8 })
  await page.mouse.up()
})

Then('the panel {string} starts at column {int}', async ({ page }, title: string, x: number) => {
  await expect.poll(async () => (await layoutOf(page, title))[0]).toBe(x)
})

When(
  'I resize the panel {string} by {int} columns and {int} rows with the mouse',
  async ({ page }, title: string, cols: number, rows: number) => {
    const { col, row } = await cell(page)
    const grip = gridItem(page, title).locator('.vgl-item__resizer')
    await grip.hover()
    const handle = (await grip.boundingBox())!
    const x = handle.x + handle.width / 2
    const y = handle.y + handle.height / 2
    await page.mouse.move(x, y)
    await page.mouse.down()
    await page.mouse.move(x + (cols * col) / 2, y + (rows * row) / 2, { steps: 8 })
    await page.mouse.move(x + cols * col, y + rows * row, { steps: 8 })
    await page.mouse.up()
  },
)

Then('the panel {string} is {int} columns wide and {int} rows high', async ({ page, world }, title: string, w: number, h: number) => {
  await expect.poll(async () => (await layoutOf(page, title)).slice(2)).toEqual([w, h])
  // Remember every panel's place and box for after the reload.
  const places: Record<string, { layout: number[]; box: { x: number; y: number; width: number; height: number } }> = {}
  for (const heading of await page.getByTestId('panel-heading').allTextContents()) {
    places[heading] = { layout: await layoutOf(page, heading), box: await boxInGrid(page, heading) }
  }
  world.places = places
})

Then('every panel has the place it had before the reload', async ({ page, world }) => {
  const places = world.places!
  expect(Object.keys(places)).toHaveLength(3)
  for (const [title, before] of Object.entries(places)) {
    await expect.poll(() => layoutOf(page, title)).toEqual(before.layout)
    await expect
      .poll(async () => {
        const b = await boxInGrid(page, title)
        return [Math.round(b.x), Math.round(b.y), Math.round(b.width), Math.round(b.height)]
      })
      .toEqual([Math.round(before.box.x), Math.round(before.box.y), Math.round(before.box.width), Math.round(before.box.height)])
  }
})

Then('the server has the dashboard {string} with the same places', async ({ page, world }, name: string) => {
  const places = world.places!
  const res = await page.request.get('/api/v1/dashboards')
  expect(res.ok()).toBe(true)
  const body = (await res.json()) as { dashboards: { name: string; panels: { title: string; type: string; layout: { x: number; y: number; w: number; h: number } }[] }[] }
  const d = body.dashboards.find((x) => x.name === name)!
  expect(d.panels.map((p) => p.type).sort()).toEqual(['stat', 'text', 'timeseries'])
  for (const p of d.panels) expect([p.layout.x, p.layout.y, p.layout.w, p.layout.h]).toEqual(places[p.title]!.layout)
})

When(
  'I add the variable {string} with the values of the label {string} of {string}',
  async ({ page }, name: string, key: string, metric: string) => {
    await page.getByTestId('variables-toggle').click()
    const editor = page.getByTestId('variable-editor')
    await editor.getByTestId('variable-name').fill(name)
    await editor.getByTestId('metric-select').selectOption(metric)
    await editor.getByTestId('variable-key').fill(key)
    await editor.getByTestId('variable-add').click()
    await expect(page.getByTestId(`variable-${name}`)).toBeVisible()
    await page.getByTestId('variables-toggle').click()
  },
)

Then('the variable {string} is {string}', async ({ page }, name: string, value: string) => {
  await expect(page.getByTestId(`variable-${name}`)).toHaveValue(value)
})

When('I choose {string} for the variable {string}', async ({ page }, value: string, name: string) => {
  await page.getByTestId(`variable-${name}`).selectOption(value)
})

Then('the address has {string}', async ({ page }, part: string) => {
  await expect(page).toHaveURL(new RegExp(part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
})

Then('every panel queries host {string}', async ({ page }, host: string) => {
  const panels = page.getByTestId('panel')
  await expect(panels).toHaveCount(2)
  for (const p of await panels.all()) await expect(p.getByTestId('panel-query')).toContainText(`host=${host}`)
})

// ---- template and import ----

When('I create the Host overview dashboard', async ({ page }) => {
  await page.getByTestId('dashboard-template-host').click()
})

async function importJson(page: Page, doc: unknown): Promise<void> {
  if (!(await page.getByTestId('dashboard-import').isVisible())) await page.getByTestId('dashboard-import-toggle').click()
  await page.getByTestId('dashboard-import-text').fill(JSON.stringify(doc))
  await page.getByTestId('dashboard-import-check').click()
}

When(
  'I import the JSON of a dashboard {string} whose first panel has the type {string}',
  async ({ page }, name: string, type: string) => {
    await importJson(page, { name, title: name, panels: [{ id: 'p', type, title: 'x', metric: 'cpu.usage' }] })
  },
)

Then('the import is refused naming {string}', async ({ page }, field: string) => {
  await expect(page.getByTestId('dashboard-import-error')).toContainText(field)
  await expect(page.getByTestId('dashboard-import-confirm')).toHaveCount(0)
})

When('I import the JSON of the Host overview named {string}', async ({ page }, name: string) => {
  // What Export downloads: the saved document.
  const res = await page.request.get('/api/v1/dashboards')
  const body = (await res.json()) as { dashboards: { name: string }[] }
  const doc = body.dashboards.find((d) => d.name === 'host-overview')!
  await importJson(page, { ...doc, name })
  await expect(page.getByTestId('dashboard-import-confirm')).toHaveText('Create')
  await page.getByTestId('dashboard-import-confirm').click()
})

// ---- undo ----

When('I press Control+Z', async ({ page }) => {
  // Outside text fields (they keep their own undo).
  await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur())
  await page.keyboard.press('Control+z')
})

When('I click Undo', async ({ page }) => {
  await page.getByTestId('dashboard-undo').click()
})

Then('the dashboard {string} has the panels {string} and nothing else', async ({ page }, name: string, title: string) => {
  await expect(page).toHaveURL(new RegExp(`/dashboards/${name}$`))
  await expect(page.getByTestId('panel-heading')).toHaveText([title])
})

Then('the dashboard has no panels and no unsaved changes', async ({ page }) => {
  await expect(page.getByTestId('panel')).toHaveCount(0)
  await expect(page.getByTestId('dashboard-dirty')).toHaveCount(0)
  await expect(page.getByTestId('dashboard-save')).toBeDisabled()
  await expect(page.getByTestId('dashboard-undo')).toBeDisabled()
})
