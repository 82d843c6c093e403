/** The Tokens page: create, show once, revoke; checked against the real server. */
import { Given, Then, When, expect } from '../support/fixtures'

Given('I open the tokens page', async ({ page }) => {
  await page.getByRole('link', { name: 'Tokens' }).first().click()
  await expect(page).toHaveURL(/\/tokens$/)
})

Then('the tokens page lists {int} token(s)', async ({ page }, count: number) => {
  await expect(page.getByTestId('token-row')).toHaveCount(count)
})

Then('the tokens page lists {int} token(s), marked as this session\'s', async ({ page }, count: number) => {
  await expect(page.getByTestId('token-row')).toHaveCount(count)
  await expect(page.getByTestId('token-row').filter({ hasText: 'this session' })).toHaveCount(1)
})

When(
  'I create a token with the scope {string} that expires after {string}',
  async ({ page, world }, scope: string, expiry: string) => {
    for (const s of ['ingest', 'read', 'admin']) await page.getByTestId(`scope-${s}`).setChecked(s === scope)
    await page.getByTestId('token-expiry').selectOption({ label: expiry })
    await page.getByTestId('create-token').click()
    const secret = (await page.getByTestId('new-token').getByTestId('copy-text').textContent())?.trim() ?? ''
    expect(secret).toMatch(/^mdt_/)
    world.tokens.set('new', secret)
  },
)

Then("the new token's secret is shown once", async ({ page }) => {
  await expect(page.getByTestId('new-token')).toContainText('not shown again')
  await page.reload()
  await expect(page.getByTestId('token-row').first()).toBeVisible()
  await expect(page.getByTestId('new-token')).toHaveCount(0)
})

Then('the new token can send a sample of {string}', async ({ server, world }, metric: string) => {
  await server.ingest(world.tokens.get('new')!, { metric, value: 1 })
})

When('I revoke the new token', async ({ page }) => {
  page.once('dialog', (dialog) => void dialog.accept())
  const row = page.getByTestId('token-row').filter({ hasNotText: 'this session' })
  await row.getByTestId('revoke-token').click()
})

Then('the new token is refused within a second', async ({ server, world }) => {
  const token = world.tokens.get('new')!
  await expect
    .poll(async () => (await server.api('POST', '/api/v1/metrics', { token, body: { metric: 'tokens.probe', value: 2 } })).status, {
      timeout: 1000,
    })
    .toBe(401)
})
