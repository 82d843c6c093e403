/** The public status page (docs/status-pages.md): set up through the API, seen by a browser without a token. */
import type { BrowserContext, Page } from '@playwright/test'
import { After, Given, Then, When, expect } from '../support/fixtures'
import type { World } from '../support/fixtures'

/** The colours of the page's stylesheet (apiserver/src/http/status_public.rs). */
const COLOURS: Record<string, string> = { green: 'rgb(31, 136, 61)', red: 'rgb(207, 34, 46)' }
const BARS: Record<string, string> = { green: 'rgb(45, 164, 78)', red: 'rgb(207, 34, 46)' }

/** The visitor: a browser context of its own, never logged in, and what its requests carried. */
interface Visitor {
  context: BrowserContext
  page: Page
  authorization: string[]
}
const visitors = new WeakMap<World, Visitor>()

function visitor(world: World): Visitor {
  const v = visitors.get(world)
  if (!v) throw new Error('no visitor has opened the status page yet')
  return v
}

function tokenOf(world: World): string {
  const token = world.tokens.get('default')
  if (!token) throw new Error('no token of the default tenant')
  return token
}

Given(
  'the default tenant has the critical alert rule {string} on {string} for host {string} above {float}',
  async ({ server, world }, name: string, metric: string, host: string, threshold: number) => {
    const rule = {
      name,
      metric,
      match: { host },
      condition: { aggregation: 'last', op: '>', threshold },
      for: '0s',
      severity: 'critical',
      labels: { team: 'secret-team' },
    }
    const answer = await server.api('POST', '/api/v1/rules', { token: tokenOf(world), body: rule })
    expect(answer.status, JSON.stringify(answer.body)).toBe(201)
  },
)

Given(
  'the default tenant has published the status page {string} titled {string} with the component {string} of the rule {string}',
  async ({ server, world }, slug: string, title: string, component: string, rule: string) => {
    const body = { title, components: [{ name: component, rule }] }
    const answer = await server.api('PUT', `/api/v1/status-pages/${slug}`, { token: tokenOf(world), body })
    expect(answer.status, JSON.stringify(answer.body)).toBe(201)
  },
)

When('a visitor without a token opens the status page {string}', async ({ browser, baseURL, world }, slug: string) => {
  // A context of its own: no cookie of the dashboard's session, no stored token.
  const context = await browser.newContext({ baseURL })
  const page = await context.newPage()
  const authorization: string[] = []
  page.on('request', (request) => {
    const header = request.headers()['authorization']
    if (header) authorization.push(header)
  })
  await page.goto(`/status/${slug}`)
  await expect(page).toHaveURL(new RegExp(`/status/${slug}$`))
  // Live: the first event of the stream arrived.
  await expect(page.locator('body')).toHaveAttribute('data-live', 'true')
  visitors.set(world, { context, page, authorization })
  const marker = crypto.randomUUID()
  await page.evaluate((m) => {
    ;(window as unknown as { __e2eMarker?: string }).__e2eMarker = m
  }, marker)
  world.pageMarker = marker
})

Then('the status page is titled {string}', async ({ world }, title: string) => {
  const { page } = visitor(world)
  await expect(page).toHaveTitle(title)
  await expect(page.locator('h1')).toHaveText(title)
})

Then(
  'the component {string} is shown {string} in {word}',
  async ({ world }, name: string, status: string, colour: string) => {
    const { page } = visitor(world)
    const component = page.locator(`li.component[data-component="${name}"]`)
    await expect(component).toHaveAttribute('data-status', status)
    const state = component.locator('.state')
    await expect(state).toHaveText(status.charAt(0).toUpperCase() + status.slice(1))
    await expect(state).toHaveCSS('color', COLOURS[colour] ?? colour)
  },
)

Then("today's bar of {string} is {word}", async ({ world }, name: string, colour: string) => {
  const { page } = visitor(world)
  const today = page.locator(`li.component[data-component="${name}"] .bar`).last()
  await expect(today).toHaveCSS('background-color', BARS[colour] ?? colour)
})

Then('the status page lists a resolved incident of {string}', async ({ world }, name: string) => {
  const { page } = visitor(world)
  const incident = page.locator('#incidents li.incident').first()
  await expect(incident).toContainText(name)
  await expect(incident).toContainText('resolved')
})

After(async ({ world }) => {
  await visitors.get(world)?.context.close()
})

// As explorer.steps.ts's "the page was not reloaded", of the visitor's page.
Then('the status page was not reloaded', async ({ world }) => {
  const { page } = visitor(world)
  const marker = await page.evaluate(() => (window as unknown as { __e2eMarker?: string }).__e2eMarker ?? null)
  expect(marker, 'the window is the same one (no reload)').toBe(world.pageMarker)
})

Then('the visitor sent no token and holds no cookie', async ({ world }) => {
  const { context, authorization } = visitor(world)
  expect(authorization).toEqual([])
  expect(await context.cookies()).toEqual([])
})

Then('the status page shows only the components {string}', async ({ world }, names: string) => {
  const { page } = visitor(world)
  await expect(page.locator('li.component .name')).toHaveText(names.split(', '))
})

Then(
  'nothing of the tenant is on the status page or in its JSON besides the chosen names',
  async ({ world, server }) => {
    const { page } = visitor(world)
    const html = await page.content()
    const json = await (await page.request.get(`${server.baseURL}/status/acme.json`)).text()
    for (const text of [html, json, await page.locator('body').innerText()]) {
      for (const secret of [
        'db-errors-high',
        'db.errors',
        'db-1',
        'secret-team',
        'secret.billing.revenue',
        'billing-7',
        '12345',
        tokenOf(world),
        'tenant',
      ]) {
        expect(text, `${secret} is public`).not.toContain(secret)
      }
    }
  },
)

When('I open the status pages of the dashboard', async ({ page }) => {
  await page.getByTestId('nav-status-pages').first().click()
  await expect(page).toHaveURL(/\/status-pages$/)
  await expect(page.getByTestId('status-page-row')).toHaveCount(1)
})

When(
  'I add the component {string} of the rule {string} to the status page {string}',
  async ({ page }, name: string, rule: string, slug: string) => {
    const row = page.getByTestId('status-page-row').filter({ hasText: `/status/${slug}` })
    await row.getByTestId('edit-status-page').click()
    await page.getByTestId('add-component').click()
    await page.getByTestId('component-name').last().fill(name)
    await page.getByTestId('component-rule').last().selectOption(rule)
    await page.getByTestId('save-status-page').click()
    await expect(page.getByTestId('status-page-form')).toHaveCount(0)
  },
)

Then('the status page {string} lists the components {string}', async ({ page }, slug: string, names: string) => {
  const row = page.getByTestId('status-page-row').filter({ hasText: `/status/${slug}` })
  await expect(row).toContainText(names)
})
