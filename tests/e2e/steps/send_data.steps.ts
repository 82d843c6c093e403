/** The send-data page: its blocks, and the curl block run as a user would paste it. */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import type { TokenRef } from '../support/parameters'
import { Then, When, expect } from '../support/fixtures'

const run = promisify(execFile)

When('I open the send-data page', async ({ page }) => {
  await page.getByTestId('nav-send-data').click()
  await expect(page).toHaveURL(/\/send$/)
})

Then(
  'it shows the blocks {string}, each naming this server or tenant',
  async ({ page, server }, list: string) => {
    const ids = list.split(',').map((s) => s.trim())
    const blocks = page.getByTestId('send-data-block')
    await expect(blocks).toHaveCount(ids.length)
    const origin = new URL(server.baseURL)
    for (const id of ids) {
      const text = await page.locator(`[data-testid="send-data-block"][data-tool="${id}"]`).innerText()
      // MQTT names the host (its own port); the others the whole origin.
      expect(text.includes(origin.origin) || (id === 'mqtt' && text.includes(`-h ${origin.hostname}`)), `${id}: ${text}`).toBe(true)
      expect(text).not.toMatch(/mdt_/)
    }
  },
)

When('I run the curl block with {token}', async ({ page, world }, ref: TokenRef) => {
  const token = 'tenant' in ref ? world.tokens.get(ref.tenant) : ref.literal
  const block = await page.locator('[data-testid="send-data-block"][data-tool="curl"] pre').innerText()
  const { stdout } = await run('bash', ['-c', `${block} --fail --silent --show-error`], {
    env: { ...process.env, MICRODASH_TOKEN: token ?? '' },
    timeout: 10_000,
  })
  expect(stdout).toContain('accepted')
})
