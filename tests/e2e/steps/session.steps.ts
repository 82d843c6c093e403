/** Logging in and out, the login page, the header. */
import type { Page } from '@playwright/test'
import { Given, Then, When, expect } from '../support/fixtures'
import type { World } from '../support/fixtures'
import type { TokenRef } from '../support/parameters'

function resolveToken(world: World, ref: TokenRef): string {
  if ('literal' in ref) return ref.literal
  const token = world.tokens.get(ref.tenant)
  if (!token) throw new Error(`no token known for tenant "${ref.tenant}"`)
  return token
}

async function submitLogin(page: Page, token: string): Promise<void> {
  await page.getByTestId('login-token').fill(token)
  await page.getByTestId('login-submit').click()
}

export async function logIn(page: Page, token: string): Promise<void> {
  await page.goto('/login')
  await submitLogin(page, token)
  await expect(page.getByTestId('tenant-name')).toBeVisible()
  await expect(page).not.toHaveURL(/\/login/)
}

Given('I am logged in with {token}', async ({ page, world }, ref: TokenRef) => {
  await logIn(page, resolveToken(world, ref))
})

Given('I have opened the login page', async ({ page, world }) => {
  await page.goto('/login')
  await expect(page.getByTestId('login-token')).toBeVisible()
  // From here on, count every navigation of the page (including history.pushState ones).
  world.navigations = []
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) world.navigations?.push(frame.url())
  })
})

When('I log in with {token}', async ({ page, world }, ref: TokenRef) => {
  // Log in from where the scenario stands: the login page, or open it first.
  if (!/\/login(\?|$)/.test(page.url())) await page.goto('/login')
  await submitLogin(page, resolveToken(world, ref))
})

When('I visit {string}', async ({ page }, path: string) => {
  await page.goto(path)
})

When('I log out', async ({ page }) => {
  await page.getByTestId('logout').click()
})

Then('the login form shows the error {string}', async ({ page }, message: string) => {
  const error = page.getByTestId('login-error')
  await expect(error).toBeVisible()
  await expect(error).toHaveText(message)
  await expect(page.getByTestId('login-token')).toHaveAttribute('aria-invalid', 'true')
  // The form is usable again for a second try.
  await expect(page.getByTestId('login-submit')).toBeEnabled()
})

Then('I am still on the login page', async ({ page }) => {
  await expect(page).toHaveURL(/\/login$/)
  await expect(page.getByTestId('login-token')).toBeVisible()
  await expect(page.getByTestId('tenant-name')).toHaveCount(0)
})

Then('the page did not navigate', async ({ world }) => {
  expect(world.navigations, 'the navigation counter was started by "I have opened the login page"').not.toBeNull()
  expect(world.navigations).toEqual([])
})

Then('no session cookie was set', async ({ context }) => {
  const names = (await context.cookies()).map((c) => c.name)
  expect(names).not.toContain('microdash_session')
})

Then('I am on the login page', async ({ page }) => {
  await expect(page).toHaveURL(/\/login(\?|$)/)
  await expect(page.getByTestId('login-token')).toBeVisible()
})

Then('the header shows the tenant {string}', async ({ page }, tenant: string) => {
  await expect(page.getByTestId('tenant-name')).toHaveText(tenant)
})

Then('the live indicator shows {string}', async ({ page }, state: string) => {
  await expect(page.getByTestId('live-indicator')).toHaveAttribute('data-state', state)
})
