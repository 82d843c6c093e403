/** Silences in the dashboard: made from the alert list, seen there, expired on the silences page. */
import type { Page } from '@playwright/test'
import { Then, When, expect } from '../support/fixtures'

/** The alert list's row of `rule` on `host` (labels are shown as `host=db-1, …`). */
const alertRow = (page: Page, rule: string, host: string) =>
  page.getByTestId('alert-row').filter({ hasText: rule }).filter({ hasText: `host=${host}` })

/** A silence row whose matcher chips are exactly `matchers` (`alertname=x, host=y`, alertname first). */
async function silenceRows(page: Page, scope: string, matchers: string) {
  const rows = page.getByTestId(scope).getByTestId('silence-row')
  const found = []
  for (const row of await rows.all()) {
    const chips = await row.getByTestId('silence-matcher').allTextContents()
    if (chips.map((c) => c.trim()).join(', ') === matchers) found.push(row)
  }
  return found
}

When('I open the alerts page', async ({ page }) => {
  await page.getByTestId('nav-alerts').first().click()
  await expect(page).toHaveURL(/\/alerts$/)
})

When('I open the silences page', async ({ page }) => {
  await page.getByTestId('nav-silences').first().click()
  await expect(page).toHaveURL(/\/silences$/)
})

Then(
  /^the alert "([^"]+)" of host "([^"]+)" is firing and (not )?marked silenced$/,
  async ({ page }, rule: string, host: string, not: string | undefined) => {
    const row = alertRow(page, rule, host)
    // The rule is evaluated every few seconds: give the first evaluation its time.
    await expect(row.getByTestId('alert-state')).toHaveAttribute('data-state', 'FIRING', { timeout: 20_000 })
    await expect(row.getByTestId('alert-silenced')).toHaveCount(not ? 0 : 1)
  },
)

When('I silence the alert {string} of host {string}', async ({ page }, rule: string, host: string) => {
  await alertRow(page, rule, host).getByTestId('alert-silence').click()
  await expect(page).toHaveURL(/\/silences\?new=1/)
  await expect(page.getByTestId('silence-form')).toBeVisible()
})

async function formMatchers(page: Page): Promise<string[]> {
  const out: string[] = []
  for (const row of await page.getByTestId('silence-form').getByTestId('matcher-row').all()) {
    out.push(`${await row.getByTestId('matcher-name').inputValue()}=${await row.getByTestId('matcher-value').inputValue()}`)
  }
  return out
}

Then('the silence form has the matchers {string}', async ({ page }, matchers: string) => {
  await expect.poll(() => formMatchers(page)).toEqual(matchers.split(', '))
})

When('I remove the matcher {string}', async ({ page }, name: string) => {
  const before = (await formMatchers(page)).length
  const rows = page.getByTestId('silence-form').getByTestId('matcher-row')
  for (const row of await rows.all()) {
    if ((await row.getByTestId('matcher-name').inputValue()) === name) {
      await row.getByTestId('matcher-remove').click()
      break
    }
  }
  await expect(rows).toHaveCount(before - 1)
  expect((await formMatchers(page)).some((m) => m.startsWith(`${name}=`))).toBe(false)
})

When(
  'I create the silence for {string} with the comment {string} by {string}',
  async ({ page }, duration: string, comment: string, author: string) => {
    const form = page.getByTestId('silence-form')
    await form.getByTestId(`duration-${duration}`).check()
    await form.getByTestId('silence-comment').fill(comment)
    await form.getByTestId('silence-author').fill(author)
    await form.getByTestId('silence-submit').click()
    await expect(page.getByTestId('silence-created')).toBeVisible()
    await expect(page.getByTestId('silence-form')).toHaveCount(0)
    await expect(page).toHaveURL(/\/silences$/)
  },
)

Then(
  'the silences page lists {int} active silence(s) of {string} that ends in 2h, {string} by {string}',
  async ({ page }, count: number, matchers: string, comment: string, author: string) => {
    await expect(page.getByTestId('silences-current').getByTestId('silence-row')).toHaveCount(count)
    const [row] = await silenceRows(page, 'silences-current', matchers)
    expect(row, `a current silence of ${matchers}`).toBeDefined()
    await expect(row!).toHaveAttribute('data-status', 'active')
    // The server set the end (now+2h); "2h" until a minute of it has passed.
    await expect(row!.getByTestId('silence-timing')).toHaveText(/^ends in (2h|1h 59m)$/)
    await expect(row!.getByTestId('silence-comment-text')).toHaveText(comment)
    await expect(row!.getByTestId('silence-author-text')).toHaveText(`by ${author}`)
  },
)

When('I expire the silence of {string}', async ({ page }, matchers: string) => {
  // The page loads its list after the navigation: wait for the row instead of reading once.
  await expect
    .poll(async () => (await silenceRows(page, 'silences-current', matchers)).length, {
      message: `a current silence of ${matchers}`,
    })
    .toBe(1)
  const [row] = await silenceRows(page, 'silences-current', matchers)
  page.once('dialog', (dialog) => void dialog.accept())
  await row!.getByTestId('silence-expire').click()
})

Then(
  'the silences page lists no active silence and {int} expired silence(s) of {string}',
  async ({ page }, count: number, matchers: string) => {
    await expect(page.getByTestId('silences-current')).toHaveCount(0)
    await expect(page.getByTestId('state-empty')).toContainText('No active or pending silences')
    await page.getByTestId('toggle-expired').click()
    await expect(page.getByTestId('silences-expired').getByTestId('silence-row')).toHaveCount(count)
    expect(await silenceRows(page, 'silences-expired', matchers)).toHaveLength(count)
  },
)

Then('the server lists {int} silence(s), {string}', async ({ server, world }, count: number, status: string) => {
  const answer = await server.api<{ silences: { status: string }[] }>('GET', '/api/v1/silences', {
    token: world.tokens.get('default'),
  })
  expect(answer.status).toBe(200)
  expect(answer.body.silences.map((s) => s.status)).toEqual(Array(count).fill(status))
})
