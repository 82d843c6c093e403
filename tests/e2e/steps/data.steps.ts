/** Data that scenarios send to the server over its HTTP API (ingest, admin). */
import { performance } from 'node:perf_hooks'
import { Given, When } from '../support/fixtures'
import type { Sample } from '../support/server'
import type { Target, World } from '../support/fixtures'

function tokenOf(world: World, tenant: string): string {
  const token = world.tokens.get(tenant)
  if (!token) throw new Error(`no token known for tenant "${tenant}" (create it first)`)
  return token
}

async function send(server: Target, world: World, tenant: string, sample: Sample): Promise<void> {
  await server.ingest(tokenOf(world, tenant), sample)
  world.lastSample = sample
  world.lastSentAt = performance.now()
}

Given('the admin has created the tenant {string}', async ({ server, world }, name: string) => {
  world.tokens.set(name, await server.createTenant(name))
})

Given(
  '{tenant} has sent {int} samples of {string} for host {string} in the last minute',
  async ({ server, world }, tenant: string, count: number, metric: string, host: string) => {
    const now = Date.now()
    const step = Math.floor(60_000 / (count + 1))
    const samples: Sample[] = Array.from({ length: count }, (_, i) => ({
      metric,
      value: 10 + i * 5,
      ts: now - 60_000 + (i + 1) * step,
      labels: { host },
    }))
    await server.ingestBulk(tokenOf(world, tenant), samples)
    world.lastSample = samples.at(-1) ?? null
  },
)

Given(
  '{tenant} has sent 2 samples of the counter {string} with mode {string} for host {string} in the last minute',
  async ({ server, world }, tenant: string, metric: string, mode: string, host: string) => {
    // 30 s apart, +45: a rate of 1.5 per second.
    const now = Date.now()
    const samples: Sample[] = [
      { metric, value: 100, ts: now - 40_000, labels: { host, cpu: '0', mode } },
      { metric, value: 145, ts: now - 10_000, labels: { host, cpu: '0', mode } },
    ]
    await server.ingestBulk(tokenOf(world, tenant), samples)
    world.lastSample = samples.at(-1) ?? null
  },
)

// "has sent" (a precondition) and "sends" (an action) do the same: POST one sample, stamped now.
async function sendOne(server: Target, world: World, tenant: string, metric: string, value: number, host: string) {
  await send(server, world, tenant, { metric, value, ts: Date.now(), labels: { host } })
}

Given(
  '{tenant} has sent a sample of {string} with value {float} for host {string}',
  async ({ server, world }, tenant: string, metric: string, value: number, host: string) =>
    sendOne(server, world, tenant, metric, value, host),
)

When(
  '{tenant} sends a sample of {string} with value {float} for host {string}',
  async ({ server, world }, tenant: string, metric: string, value: number, host: string) =>
    sendOne(server, world, tenant, metric, value, host),
)
