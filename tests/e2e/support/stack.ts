/**
 * The Compose stack (docker-compose.yml) as the target of the scenarios, when the test command's
 * container step (scripts/compose-test.sh) runs them with `playwright.stack.config.ts`:
 * the browser and the HTTP calls go to the api replicas' published ports, and `compose()` runs
 * `docker compose` on the same project to act on the containers.
 *
 * Each scenario gets a tenant of its own, created through the admin API and deleted afterwards,
 * as "the default tenant": the stack outlives scenarios (and runs), so nothing one leaves can
 * change what another counts. The stack's real tenant `default` (the agent's and the Mosquitto
 * devices') is `stackDefaultToken`.
 *
 * Environment (set by scripts/compose-test.sh; the cluster's e2e sets the first two only, for
 * "Ingest → Chart" against a port-forwarded api Service):
 *   E2E_STACK_URL                    api replica 1 (http://127.0.0.1:PORT)
 *   E2E_STACK_ADMIN_TOKEN            the installation's admin token
 *   E2E_STACK_URL_2                  api replica 2 (default: replica 1)
 *   E2E_STACK_DEFAULT_TOKEN          MICRODASH_DEFAULT_TENANT_TOKEN (tenant `default`)
 *   E2E_STACK_MQTT_PASSWORD          tenant `default`'s Mosquitto password
 *   E2E_STACK_EMBEDDED_URL           where the `embedded` profile publishes its port
 *   E2E_COMPOSE                      JSON array: the `docker compose …` command of the project
 * Steps that need one of the later ones fail naming it when it is not set.
 */
import { execFile } from 'node:child_process'
import crypto from 'node:crypto'
import { promisify } from 'node:util'
import { HttpTarget } from './server'

const run = promisify(execFile)

export const STACK_MODE = !!process.env.E2E_STACK_URL

function required(name: string): string {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is not set: the stack scenarios run from scripts/compose-test.sh (make test)`)
  return value
}

/** An HTTP client of one published port of the stack. */
export class StackEndpoint extends HttpTarget {
  constructor(
    readonly url: string,
    readonly adminToken: string,
  ) {
    super()
  }

  get baseURL(): string {
    return this.url
  }
}

export class StackTarget extends HttpTarget {
  readonly adminToken = required('E2E_STACK_ADMIN_TOKEN')
  /** api replica 1 (the browser's) and replica 2. */
  readonly replicas: [StackEndpoint, StackEndpoint]
  /** The tenant of this scenario, "the default tenant" of the steps. */
  tenant = ''
  defaultToken = ''

  private constructor() {
    super()
    this.replicas = [
      new StackEndpoint(required('E2E_STACK_URL'), this.adminToken),
      new StackEndpoint(process.env.E2E_STACK_URL_2 || required('E2E_STACK_URL'), this.adminToken),
    ]
  }

  get stackDefaultToken(): string {
    return required('E2E_STACK_DEFAULT_TOKEN')
  }

  get mqttPassword(): string {
    return required('E2E_STACK_MQTT_PASSWORD')
  }

  /** A new tenant on the running stack for one scenario. */
  static async connect(): Promise<StackTarget> {
    const stack = new StackTarget()
    stack.tenant = `e2e-${crypto.randomBytes(5).toString('hex')}`
    stack.defaultToken = await stack.createTenant(stack.tenant)
    return stack
  }

  get baseURL(): string {
    return this.replicas[0].url
  }

  get embedded(): StackEndpoint {
    return new StackEndpoint(required('E2E_STACK_EMBEDDED_URL'), this.adminToken)
  }

  /** `docker compose ARGS` on the stack's project; throws with its output when it fails. */
  async compose(...args: string[]): Promise<string> {
    const [cmd, ...base] = JSON.parse(required('E2E_COMPOSE')) as string[]
    try {
      const { stdout } = await run(cmd!, [...base, ...args], { maxBuffer: 16 << 20, timeout: 300_000 })
      return stdout
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string; message: string }
      throw new Error(`docker compose ${args.join(' ')} failed: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`)
    }
  }

  /** The containers' last log lines, for a failed scenario's report. */
  async logsText(): Promise<string> {
    if (!process.env.E2E_COMPOSE) return '(not a Compose stack: no container logs here)'
    try {
      return await this.compose('--profile', '*', 'logs', '--no-color', '--tail', '300')
    } catch (e) {
      return String(e)
    }
  }

  /** Deletes the scenario's tenant (when the stack still answers). */
  async dispose(): Promise<void> {
    if (!this.tenant) return
    for (const endpoint of [this.replicas[0], this.replicas[1]]) {
      try {
        await endpoint.deleteTenant(this.tenant)
        return
      } catch {
        // That replica is down (a scenario took the stack down): try the other, then give up.
      }
    }
  }
}

export interface StreamedSample {
  metric: string
  labels: Record<string, string>
  ts: number
  value: number
}

/** An SSE stream (`/api/v1/stream`) read by this process, for checks without a browser. */
export class LiveStream {
  readonly samples: StreamedSample[] = []
  private readonly abort = new AbortController()
  private ready = false
  private failure: string | null = null

  private constructor() {}

  /** Opens the stream and waits for its `event: ready`. */
  static async open(baseURL: string, token: string, metric: string): Promise<LiveStream> {
    const stream = new LiveStream()
    const res = await fetch(`${baseURL}/api/v1/stream?metric=${encodeURIComponent(metric)}`, {
      headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' },
      signal: stream.abort.signal,
    })
    if (res.status !== 200 || !res.body) throw new Error(`GET ${baseURL}/api/v1/stream → ${res.status}`)
    void stream.pump(res.body)
    await stream.until(() => stream.ready, 10_000, 'the stream said it is ready')
    return stream
  }

  private async pump(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder()
    let buffer = ''
    try {
      for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true })
        let end: number
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          this.onEvent(buffer.slice(0, end))
          buffer = buffer.slice(end + 2)
        }
      }
      this.failure ??= 'the stream ended'
    } catch (e) {
      if (!this.abort.signal.aborted) this.failure = `the stream failed: ${String(e)}`
    }
  }

  private onEvent(text: string): void {
    let event = 'message'
    const data: string[] = []
    for (const line of text.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim()
      else if (line.startsWith('data:')) data.push(line.slice(5).trimStart())
    }
    if (event === 'ready') this.ready = true
    else if (data.length > 0 && event !== 'reset') {
      try {
        const sample = JSON.parse(data.join('\n')) as StreamedSample
        if (typeof sample.metric === 'string') this.samples.push(sample)
      } catch {
        // Not a sample (keep-alive comments carry no data).
      }
    }
  }

  /** Resolves once `check` holds; throws after `ms` (or when the stream broke) naming `what`. */
  async until(check: () => boolean, ms: number, what: string): Promise<void> {
    const deadline = Date.now() + ms
    while (!check()) {
      if (this.failure) throw new Error(`${what}: ${this.failure}`)
      if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
      await new Promise((r) => setTimeout(r, 10))
    }
  }

  close(): void {
    this.abort.abort()
  }
}

/**
 * Bulk ingest that runs until stopped: one loop per api replica, each POSTing batches of
 * `SERIES` samples (one per series, label `s`), a new timestamp per batch (unique across the
 * loops), and remembering which batches were acknowledged (202 with every sample accepted).
 * Bounded: each loop ends by itself after `maxMs`.
 */
export class IngestLoad {
  static readonly SERIES = 50
  /** Timestamps of the acknowledged batches. */
  readonly acked: number[] = []
  /** Timestamps of batches that got no 202 (error answers, refused or broken connections). */
  readonly unacked: number[] = []
  readonly answers = new Map<string, number>()
  private stopping = false
  private lastTs = 0
  private readonly loops: Promise<void>[]

  constructor(
    readonly metric: string,
    private readonly token: string,
    endpoints: HttpTarget[],
    private readonly maxMs = 180_000,
  ) {
    this.loops = endpoints.map((endpoint) => this.loop(endpoint))
  }

  private nextTs(): number {
    this.lastTs = Math.max(this.lastTs + 1, Date.now())
    return this.lastTs
  }

  private async loop(endpoint: HttpTarget): Promise<void> {
    const deadline = Date.now() + this.maxMs
    while (!this.stopping && Date.now() < deadline) {
      const ts = this.nextTs()
      const samples = Array.from({ length: IngestLoad.SERIES }, (_, s) => ({
        metric: this.metric,
        value: s,
        ts,
        labels: { s: String(s) },
      }))
      let outcome: string
      try {
        const res = await fetch(`${endpoint.baseURL}/api/v1/metrics/bulk`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${this.token}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ samples }),
          signal: AbortSignal.timeout(10_000),
        })
        const body = (await res.json().catch(() => ({}))) as { accepted?: number }
        outcome = String(res.status)
        if (res.status === 202 && body.accepted === samples.length) this.acked.push(ts)
        else this.unacked.push(ts)
      } catch (e) {
        outcome = (e as Error).name
        this.unacked.push(ts)
      }
      this.answers.set(outcome, (this.answers.get(outcome) ?? 0) + 1)
      // About ten batches a second per replica: a steady stream, not a load test.
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  async stop(): Promise<void> {
    this.stopping = true
    await Promise.all(this.loops)
  }

  summary(): string {
    return `${this.acked.length} batches acknowledged, ${this.unacked.length} not; answers ${JSON.stringify(Object.fromEntries(this.answers))}`
  }
}
