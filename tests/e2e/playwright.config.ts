import { defineConfig } from '@playwright/test'
import { defineBddConfig } from 'playwright-bdd'
import { CHROMIUM_ARGS, CHROMIUM_PATH } from './support/paths'

// Features (the spec, in Gherkin) → generated Playwright tests in .features-gen/.
const testDir = defineBddConfig({
  outputDir: '.features-gen/local',
  // Against a server process of each scenario; features/stack/ runs against the Compose stack
  // (playwright.stack.config.ts).
  features: 'features/*.feature',
  // support/fixtures.ts holds the custom `test` (server, baseURL, world) the steps are bound to.
  steps: ['steps/*.ts', 'support/fixtures.ts'],
  missingSteps: 'fail-on-gen',
})

export default defineConfig({
  testDir,
  globalSetup: './support/global-setup.ts',
  // One browser and one server at a time: the machine is small and shared with Rust builds.
  workers: 1,
  fullyParallel: false,
  forbidOnly: !!process.env.CI,
  retries: 0,
  timeout: 60_000,
  expect: { timeout: 10_000 },
  reporter: [['list']],
  outputDir: 'test-results',
  use: {
    viewport: { width: 1280, height: 800 },
    actionTimeout: 10_000,
    navigationTimeout: 15_000,
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
  },
  projects: [
    {
      name: 'chromium',
      use: {
        browserName: 'chromium',
        launchOptions: { executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS },
      },
    },
  ],
})
