/**
 * Steps of features/stack/: the Compose stack's containers (scripts/compose-test.sh runs them
 * with playwright.stack.config.ts; see support/stack.ts).
 */
import crypto from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { Given, Then, When, expect, type Target } from '../support/fixtures'
import { IngestLoad, LiveStream, StackEndpoint, StackTarget } from '../support/stack'
import { logIn } from './session.steps'

function stackOf(server: Target): StackTarget {
  if (!(server instanceof StackTarget)) throw new Error('this step acts on the Compose stack: run it with playwright.stack.config.ts')
  return server
}

function tokenOfStackTenant(stack: StackTarget, tenant: string): string {
  if (tenant !== 'default') throw new Error(`only the stack's tenant "default" has a token and a Mosquitto user in .env`)
  return stack.stackDefaultToken
}

interface QueryAnswer {
  resolution: string
  series: { labels: Record<string, string>; points: [number, number][] }[]
}

async function query(endpoint: { api: StackTarget['api'] }, token: string, params: Record<string, string>): Promise<QueryAnswer> {
  const res = await endpoint.api<QueryAnswer>('GET', `/api/v1/query?${new URLSearchParams(params)}`, { token })
  if (res.status !== 200) throw new Error(`query ${JSON.stringify(params)} → ${res.status} ${JSON.stringify(res.body)}`)
  return res.body
}

const pointCount = (answer: QueryAnswer) => answer.series.reduce((n, s) => n + s.points.length, 0)

// ---- the agent -----------------------------------------------------------------------------

Then(
  "within {int} seconds the stack's tenant {string} has {string} samples of the last minute from the agent",
  async ({ server }, seconds: number, tenant: string, metric: string) => {
    const stack = stackOf(server)
    const token = tokenOfStackTenant(stack, tenant)
    let last: QueryAnswer | null = null
    await expect
      .poll(
        async () => {
          last = await query(stack, token, { metric, from: 'now-1m' })
          // The agent labels every sample with the host's name and the cpu (`total`, 0, 1, …).
          return last.series.some((s) => s.labels.cpu === 'total' && !!s.labels.host && s.points.length > 0)
        },
        { timeout: seconds * 1000, intervals: [1000] },
      )
      .toBe(true)
  },
)

// ---- MQTT through Mosquitto ----------------------------------------------------------------

Given("I am logged in with the stack's tenant {string}", async ({ page, server }, tenant: string) => {
  await logIn(page, tokenOfStackTenant(stackOf(server), tenant))
})

/** Publishes one JSON sample with mosquitto_pub inside the Mosquitto container (QoS 1). */
async function publish(stack: StackTarget, tenant: string, metric: string, value: number): Promise<number> {
  const ts = Date.now()
  await stack.compose(
    'exec', '-T', 'mosquitto', 'mosquitto_pub', '-h', '127.0.0.1', '-q', '1',
    '-u', tenant, '-P', stack.mqttPassword,
    '-t', `metrics/${tenant}/${metric}`, '-m', JSON.stringify({ value, ts }),
  )
  return ts
}

Given(
  "a device of the stack's tenant {string} has published a value of a new metric to the Mosquitto container",
  async ({ server, world }, tenant: string) => {
    const stack = stackOf(server)
    const metric = `mqtt_check_${crypto.randomBytes(4).toString('hex')}`
    const ts = await publish(stack, tenant, metric, 1)
    world.lastSample = { metric, value: 1, ts }
    // Stored: readable through the query API.
    await expect
      .poll(async () => pointCount(await query(stack, tokenOfStackTenant(stack, tenant), { metric, from: 'now-5m' })), {
        timeout: 15_000,
      })
      .toBe(1)
  },
)

Given('I have a live chart of that metric open in the explorer', async ({ page, world }) => {
  const metric = world.lastSample?.metric
  expect(metric, 'a previous step named the metric').toBeDefined()
  await page.goto(`/explorer?metric=${encodeURIComponent(metric!)}&range=live`)
  await expect(page.getByTestId('chart')).toHaveAttribute('data-points', '1')
})

When(
  "a device of the stack's tenant {string} publishes a value of that metric to the Mosquitto container",
  async ({ server, world }, tenant: string) => {
    const metric = world.lastSample!.metric
    const value = 21.5
    world.lastSentAt = performance.now()
    const ts = await publish(stackOf(server), tenant, metric, value)
    world.lastSample = { metric, value, ts }
  },
)

// ---- two api replicas, one live stream -----------------------------------------------------

function replica(stack: StackTarget, n: number): StackEndpoint {
  const endpoint = stack.replicas[n - 1]
  if (!endpoint) throw new Error(`there are two api replicas, not ${n}`)
  return endpoint
}

Given('a live stream of {string} is open on api replica {int}', async ({ server, world }, metric: string, n: number) => {
  const stack = stackOf(server)
  world.stream = await LiveStream.open(replica(stack, n).url, stack.defaultToken, metric)
})

When(
  'the default tenant sends a sample of {string} with value {float} through api replica {int}',
  async ({ server, world }, metric: string, value: number, n: number) => {
    const stack = stackOf(server)
    const sample = { metric, value, ts: Date.now(), labels: { host: 'replica-check' } }
    await replica(stack, n).ingest(stack.defaultToken, sample)
    world.lastSample = sample
    world.lastSentAt = performance.now()
  },
)

Then(
  'within {int} seconds the stream on api replica {int} receives that sample',
  async ({ world, $testInfo }, seconds: number, _n: number) => {
    const stream = world.stream
    const sample = world.lastSample
    expect(stream && sample, 'a stream was opened and a sample sent').toBeTruthy()
    await stream!.until(
      () => stream!.samples.some((s) => s.metric === sample!.metric && s.ts === sample!.ts && s.value === sample!.value),
      seconds * 1000,
      `the sample ${JSON.stringify(sample)} on the other replica's stream`,
    )
    $testInfo.annotations.push({ type: 'latency', description: `on the other replica's stream ${Math.round(performance.now() - world.lastSentAt)} ms after its 202` })
  },
)

// ---- acknowledged ingest across container failures -----------------------------------------

Given('acknowledged bulk ingest of {string} runs through both api replicas', async ({ server, world }, metric: string) => {
  const stack = stackOf(server)
  world.load = new IngestLoad(metric, stack.defaultToken, [...stack.replicas])
  // Some acknowledged batches before the failure.
  await expect.poll(() => world.load!.acked.length, { timeout: 15_000 }).toBeGreaterThanOrEqual(10)
})

When('the {string} container is killed with SIGKILL and started again', async ({ server }, service: string) => {
  const stack = stackOf(server)
  await stack.compose('kill', '-s', 'KILL', service)
  await new Promise((r) => setTimeout(r, 2000))
  await stack.compose('start', service)
})

When('the {string} container is restarted', async ({ server }, service: string) => {
  await stackOf(server).compose('restart', service)
})

When('the ingest stops after {int} more seconds', async ({ world, $testInfo }, seconds: number) => {
  await new Promise((r) => setTimeout(r, seconds * 1000))
  await world.load!.stop()
  $testInfo.annotations.push({ type: 'ingest', description: world.load!.summary() })
})

Then('every acknowledged sample of {string} is stored exactly once', async ({ server, world, $testInfo }, metric: string) => {
  const stack = stackOf(server)
  const load = world.load!
  expect(load.metric).toBe(metric)
  expect(load.acked.length, load.summary()).toBeGreaterThan(20)
  const all = [...load.acked, ...load.unacked]
  const from = String(Math.min(...all) - 1)
  const to = String(Math.max(...all) + 1)
  const wanted = new Set(load.acked)
  // The worker commits what the queue holds (re-reading its own pending entries after a kill,
  // waiting out a database restart): wait until every acknowledged batch is there.
  let raw: QueryAnswer | null = null
  const missing = () => {
    const seen = new Set<number>()
    for (const s of raw?.series ?? []) for (const [ts] of s.points) seen.add(ts)
    return [...wanted].filter((ts) => !seen.has(ts)).length
  }
  await expect
    .poll(
      async () => {
        raw = await query(stack, stack.defaultToken, { metric, from, to, resolution: 'raw' })
        return missing()
      },
      { timeout: 120_000, intervals: [1000], message: `acknowledged batches missing from storage (${load.summary()})` },
    )
    .toBe(0)
  // Every series holds each acknowledged batch's sample once, with its value.
  const rawAnswer = raw as unknown as QueryAnswer
  expect(rawAnswer.series.length).toBe(IngestLoad.SERIES)
  for (const series of rawAnswer.series) {
    const times = series.points.map(([ts]) => ts)
    expect(new Set(times).size, `series ${JSON.stringify(series.labels)} has a timestamp twice`).toBe(times.length)
    for (const ts of wanted) expect(times, `series ${JSON.stringify(series.labels)} lacks batch ${ts}`).toContain(ts)
    for (const [, value] of series.points) expect(value).toBe(Number(series.labels.s))
  }
  // Nothing counted twice either: the 1m rollups hold as many samples as the raw rows.
  const rawCount = pointCount(rawAnswer)
  const minuteFrom = String(Math.floor(Number(from) / 60_000) * 60_000)
  const minuteTo = String((Math.floor(Number(to) / 60_000) + 1) * 60_000)
  await expect
    .poll(
      async () => {
        const rollup = await query(stack, stack.defaultToken, { metric, from: minuteFrom, to: minuteTo, step: '60s', agg: 'count', resolution: '1m' })
        return rollup.series.reduce((n, s) => n + s.points.reduce((m, [, c]) => m + c, 0), 0)
      },
      { timeout: 30_000, message: 'samples counted in the 1m rollups' },
    )
    .toBe(rawCount)
  $testInfo.annotations.push({
    type: 'stored',
    description: `${rawCount} samples stored (${wanted.size} acknowledged batches × ${IngestLoad.SERIES} series, ${rawCount / IngestLoad.SERIES - wanted.size} unacknowledged batches stored too)`,
  })
})

// ---- healthchecks ---------------------------------------------------------------------------

/** Service → health of each of its containers, from `docker compose ps` (JSON lines). */
async function health(stack: StackTarget): Promise<Map<string, string[]>> {
  const out = await stack.compose('ps', '--all', '--format', 'json')
  const byService = new Map<string, string[]>()
  for (const line of out.split('\n').filter((l) => l.trim())) {
    const c = JSON.parse(line) as { Service: string; Health?: string; State: string }
    byService.set(c.Service, [...(byService.get(c.Service) ?? []), c.Health || c.State])
  }
  return byService
}

When(
  'the {string} container is stopped and the {string} container\'s process is suspended',
  async ({ server }, stopped: string, suspended: string) => {
    const stack = stackOf(server)
    await stack.compose('stop', stopped)
    // SIGSTOP from the engine (outside the container): the agent stays "running" but collects nothing.
    await stack.compose('kill', '-s', 'STOP', suspended)
  },
)

When(
  'the {string} container is started and the {string} container\'s process is resumed',
  async ({ server }, started: string, resumed: string) => {
    const stack = stackOf(server)
    await stack.compose('kill', '-s', 'CONT', resumed)
    await stack.compose('start', started)
  },
)

Then(
  'within {int} seconds the {string}, {string} and {string} containers are unhealthy',
  async ({ server }, seconds: number, a: string, b: string, c: string) => {
    const stack = stackOf(server)
    await expect
      .poll(
        async () => {
          const now = await health(stack)
          return [a, b, c].map((s) => `${s}: ${(now.get(s) ?? ['missing']).join(',')}`)
        },
        { timeout: seconds * 1000, intervals: [2000] },
      )
      .toEqual([a, b, c].map((s) => `${s}: ${s === 'api' ? 'unhealthy,unhealthy' : 'unhealthy'}`))
  },
)

Then('within {int} seconds every container of the stack is healthy', async ({ server }, seconds: number) => {
  const stack = stackOf(server)
  await expect
    .poll(
      async () => {
        const unhealthy: string[] = []
        for (const [service, states] of await health(stack)) {
          // The one-shot password writer has exited; everything else must be healthy.
          if (service === 'mosquitto-passwords') continue
          if (states.some((s) => s !== 'healthy')) unhealthy.push(`${service}: ${states.join(',')}`)
        }
        return unhealthy
      },
      { timeout: seconds * 1000, intervals: [2000] },
    )
    .toEqual([])
})

// ---- the stack's life cycle ----------------------------------------------------------------

Given('the default tenant has a rule {string} on {string}', async ({ server }, name: string, metric: string) => {
  const res = await server.api('PUT', `/api/v1/rules/${encodeURIComponent(name)}`, {
    token: server.defaultToken,
    body: {
      name,
      metric,
      condition: { aggregation: 'last', op: '>', threshold: 1000 },
      for: '0s',
      severity: 'warning',
      channels: [],
    },
  })
  expect([200, 201], `PUT rule → ${res.status} ${JSON.stringify(res.body)}`).toContain(res.status)
})

When('the stack is taken down and brought up again', async ({ server, $testInfo }) => {
  const stack = stackOf(server)
  await stack.compose('down')
  const started = performance.now()
  await stack.compose('up', '-d', '--wait')
  $testInfo.annotations.push({ type: 'compose', description: `up --wait after down: ${Math.round(performance.now() - started)} ms` })
})

Then('the default tenant still reads {int} samples of {string}', async ({ server }, count: number, metric: string) => {
  const stack = stackOf(server)
  for (const endpoint of stack.replicas) {
    expect(pointCount(await query(endpoint, stack.defaultToken, { metric, from: 'now-15m', resolution: 'raw' }))).toBe(count)
  }
})

Then('the default tenant still has the rule {string}', async ({ server }, name: string) => {
  const res = await server.api<{ name?: string }>('GET', `/api/v1/rules/${encodeURIComponent(name)}`, { token: server.defaultToken })
  expect(res.status, JSON.stringify(res.body)).toBe(200)
  expect(res.body.name).toBe(name)
})

When('the stack is taken down and the embedded profile is brought up', async ({ server, $testInfo }) => {
  const stack = stackOf(server)
  await stack.compose('down')
  const started = performance.now()
  await stack.compose('--profile', 'embedded', 'up', '-d', '--wait')
  $testInfo.annotations.push({ type: 'compose', description: `embedded up --wait: ${Math.round(performance.now() - started)} ms` })
  const services = (await stack.compose('--profile', 'embedded', 'ps', '--services', '--status', 'running')).trim().split('\n')
  expect(services, 'only the single binary runs').toEqual(['microdash'])
})

When(
  'the admin creates the tenant {string} on the embedded server and it sends {int} samples of {string}',
  async ({ server, world }, tenant: string, count: number, metric: string) => {
    const embedded = stackOf(server).embedded
    await embedded.deleteTenant(tenant) // a volume left by an earlier run
    const token = await embedded.createTenant(tenant)
    world.tokens.set(tenant, token)
    const now = Date.now()
    await embedded.ingestBulk(
      token,
      Array.from({ length: count }, (_, i) => ({ metric, value: i, ts: now - 1000 * (i + 1), labels: { host: 'embedded' } })),
    )
  },
)

When('the embedded container is recreated', async ({ server }) => {
  await stackOf(server).compose('--profile', 'embedded', 'up', '-d', '--wait', '--force-recreate', 'microdash')
})

Then(
  'the tenant {string} still reads {int} samples of {string} on the embedded server',
  async ({ server, world }, tenant: string, count: number, metric: string) => {
    const token = world.tokens.get(tenant)!
    expect(pointCount(await query(stackOf(server).embedded, token, { metric, from: 'now-15m', resolution: 'raw' }))).toBe(count)
  },
)
