import { defineConfig } from '@playwright/test'
import { defineBddConfig } from 'playwright-bdd'
import base from './playwright.config'

// The container step of the test command (scripts/compose-test.sh): the "Ingest → Chart"
// feature and the Compose stack's own scenarios, against the stack's published ports
// (E2E_STACK_URL and friends; see support/stack.ts). One report of its own.
const testDir = defineBddConfig({
  outputDir: '.features-gen/stack',
  features: ['features/ingest_to_chart.feature', 'features/stack/*.feature'],
  steps: ['steps/*.ts', 'support/fixtures.ts'],
  missingSteps: 'fail-on-gen',
})

export default defineConfig({
  ...base,
  testDir,
  // Scenarios act on shared containers: one at a time, in file order.
  workers: 1,
  fullyParallel: false,
  // The scenarios that restart containers wait for the worker to catch up.
  timeout: 240_000,
  outputDir: 'test-results/stack',
  reporter: [['list'], ['junit', { outputFile: process.env.E2E_STACK_REPORT || 'test-results/stack/report.xml' }]],
})
