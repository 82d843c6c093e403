/**
 * Fixtures shared by every scenario:
 * - `server`: a fresh real microdash process (see server.ts), stopped after the scenario;
 *   its log is attached to the report when the scenario fails. With E2E_STACK_URL set (the
 *   container step of the test command), the Compose stack instead, with a new tenant as the
 *   default one (see stack.ts); the containers' logs are attached on failure.
 * - `baseURL`: points the browser at that server.
 * - `world`: what one scenario remembers between steps (tokens, the last sample sent, …).
 */
import { test as base, createBdd } from 'playwright-bdd'
import { MicrodashServer, type Sample } from './server'
import { type IngestLoad, type LiveStream, STACK_MODE, StackTarget } from './stack'
import './parameters'

export interface World {
  /** Dashboards: each panel's grid place (`x,y,w,h`) and box, by title, before a reload. */
  places?: Record<string, { layout: number[]; box: { x: number; y: number; width: number; height: number } }>
  /** Tokens by tenant name; `default` is filled from the token file. */
  tokens: Map<string, string>
  /** The last sample a step sent. */
  lastSample: Sample | null
  /** performance.now() (test process) right after the last sample's 202. */
  lastSentAt: number
  /** Value of `window.__e2eMarker` once set: a reload would lose it. */
  pageMarker: string | null
  /** URLs of frame navigations since the step that started counting (null = not counting). */
  navigations: string[] | null
  /** Stack scenarios: a stream read by the test process, and a running ingest load. */
  stream?: LiveStream
  load?: IngestLoad
}

/** What the scenarios run against: a server process of their own, or the Compose stack. */
export type Target = MicrodashServer | StackTarget

export const test = base.extend<{ server: Target; world: World }>({
  server: async ({}, use, testInfo) => {
    if (STACK_MODE) {
      const stack = await StackTarget.connect()
      try {
        await use(stack)
      } finally {
        if (testInfo.status !== testInfo.expectedStatus) {
          await testInfo.attach('compose-logs.txt', { body: await stack.logsText(), contentType: 'text/plain' })
        }
        await stack.dispose()
      }
      return
    }
    const server = await MicrodashServer.start()
    try {
      await use(server)
    } finally {
      await server.dispose({ keepFiles: testInfo.status !== testInfo.expectedStatus })
      for (const note of server.forcedStops) testInfo.annotations.push({ type: 'warning', description: note })
      if (testInfo.status !== testInfo.expectedStatus) {
        await testInfo.attach('microdash.log', { body: server.logs(), contentType: 'text/plain' })
        testInfo.annotations.push({ type: 'server-dir', description: server.dir })
      }
    }
  },
  baseURL: async ({ server }, use) => {
    await use(server.baseURL)
  },
  world: async ({ server }, use) => {
    const world: World = { tokens: new Map([['default', server.defaultToken]]), lastSample: null, lastSentAt: 0, pageMarker: null, navigations: null }
    try {
      await use(world)
    } finally {
      world.stream?.close()
      await world.load?.stop()
    }
  },
})

export const { Given, When, Then, Before, After } = createBdd(test)
export { expect } from '@playwright/test'
