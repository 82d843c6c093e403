/**
 * A real `microdash serve` process for one scenario: a fresh temp folder (SQLite file, data
 * dir, logs), a free port chosen by the OS, the default tenant's token read from the file the
 * first start writes. `restart()` brings it back on the same port and data, as an operator's
 * restart would. Plus a thin HTTP client for what the scenarios send (ingest, admin).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { DASHBOARD_DIST, SERVER_BIN } from './paths'

export interface Sample {
  metric: string
  value: number
  /** Unix ms; the server uses the time of receipt when absent. */
  ts?: number
  labels?: Record<string, string>
  dedupe_id?: string
}

export interface ApiResponse<T = unknown> {
  status: number
  body: T
  headers: Headers
}

export type StopMode = 'graceful' | 'kill'

export interface StopResult {
  /** The process did not exit within the grace period after SIGTERM and was SIGKILLed. */
  forced: boolean
  ms: number
}

const START_TIMEOUT_MS = 30_000
/** How long a locked or missing binary (a rebuild in progress) is waited for. */
const BINARY_WAIT_MS = 180_000
/** How long a restart waits for its port to be free again. */
const PORT_WAIT_MS = 10_000
const STOP_GRACE_MS = Number(process.env.E2E_STOP_GRACE_MS || 3000)

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * The HTTP calls scenarios make against a microdash, wherever it runs (a process of this test
 * run, or the Compose stack's containers: see stack.ts).
 */
export abstract class HttpTarget {
  abstract readonly adminToken: string
  abstract get baseURL(): string

  async api<T = unknown>(method: string, urlPath: string, opts: { token?: string; body?: unknown } = {}): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { Accept: 'application/json' }
    if (opts.token) headers.Authorization = `Bearer ${opts.token}`
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json'
    const res = await fetch(`${this.baseURL}${urlPath}`, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    })
    const text = await res.text()
    let body: unknown = text
    try {
      body = text ? JSON.parse(text) : undefined
    } catch {
      // Keep the text.
    }
    return { status: res.status, body: body as T, headers: res.headers }
  }

  /** POST /api/v1/metrics; throws unless the server answers 202. */
  async ingest(token: string, sample: Sample): Promise<void> {
    const res = await this.api('POST', '/api/v1/metrics', { token, body: sample })
    if (res.status !== 202) throw new Error(`ingest ${JSON.stringify(sample)} → ${res.status} ${JSON.stringify(res.body)}`)
  }

  /** POST /api/v1/metrics/bulk; throws unless the server answers 202 with every sample accepted. */
  async ingestBulk(token: string, samples: Sample[]): Promise<void> {
    const res = await this.api<{ accepted?: number }>('POST', '/api/v1/metrics/bulk', { token, body: { samples } })
    if (res.status !== 202 || res.body?.accepted !== samples.length) {
      throw new Error(`bulk ingest of ${samples.length} → ${res.status} ${JSON.stringify(res.body)}`)
    }
  }

  /** POST /api/v1/tenants with the admin token; returns the new tenant's token. */
  async createTenant(name: string): Promise<string> {
    const res = await this.api<{ name?: string; token?: string }>('POST', '/api/v1/tenants', {
      token: this.adminToken,
      body: { name },
    })
    if (res.status !== 201 || !res.body?.token) {
      throw new Error(`creating tenant ${name} → ${res.status} ${JSON.stringify(res.body)}`)
    }
    return res.body.token
  }

  /** DELETE /api/v1/tenants/{name} with the admin token; throws unless 2xx or 404. */
  async deleteTenant(name: string): Promise<void> {
    const res = await this.api('DELETE', `/api/v1/tenants/${encodeURIComponent(name)}`, { token: this.adminToken })
    if (res.status >= 300 && res.status !== 404) throw new Error(`deleting tenant ${name} → ${res.status} ${JSON.stringify(res.body)}`)
  }
}

export class MicrodashServer extends HttpTarget {
  readonly dir: string
  readonly dataDir: string
  readonly databaseUrl: string
  readonly logFile: string
  readonly adminToken = `e2e-admin-${crypto.randomBytes(12).toString('hex')}`
  /** `127.0.0.1:PORT`, known after the first start. */
  address = ''
  defaultToken = ''
  /** Stops that needed SIGKILL after SIGTERM hung (reported as test annotations). */
  readonly forcedStops: string[] = []
  private proc: ChildProcess | null = null
  private exited: Promise<void> = Promise.resolve()
  private readonly log: fs.WriteStream
  private starts = 0

  private constructor() {
    super()
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'microdash-e2e-'))
    this.dataDir = path.join(this.dir, 'data')
    this.databaseUrl = `sqlite://${path.join(this.dataDir, 'microdash.db')}`
    this.logFile = path.join(this.dir, 'server.log')
    this.log = fs.createWriteStream(this.logFile, { flags: 'a' })
  }

  /** Start a fresh server on a free port. */
  static async start(): Promise<MicrodashServer> {
    const server = new MicrodashServer()
    try {
      await server.launch('127.0.0.1:0')
      const tokenFile = path.join(server.dataDir, 'default-tenant.token')
      server.defaultToken = fs.readFileSync(tokenFile, 'utf8').trim()
      if (!server.defaultToken) throw new Error(`${tokenFile} is empty`)
    } catch (e) {
      await server.dispose({ keepFiles: true })
      throw e
    }
    return server
  }

  get baseURL(): string {
    return `http://${this.address}`
  }

  get running(): boolean {
    return this.proc !== null
  }

  /** The server's own log (stdout and stderr, JSON lines), for failure reports. */
  logs(): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8')
    } catch {
      return ''
    }
  }

  private writeLog(line: string): void {
    this.log.write(`${line}\n`)
  }

  private async launch(listen: string): Promise<void> {
    const started = Date.now()
    for (;;) {
      try {
        return await this.launchOnce(listen)
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code
        // A rebuild replaces or holds the binary for a while; the old process's port may linger briefly.
        const waitMs = code === 'ETXTBSY' || code === 'ENOENT' ? BINARY_WAIT_MS : code === 'EADDRINUSE' ? PORT_WAIT_MS : 0
        if (Date.now() - started >= waitMs) throw e
        this.writeLog(`# e2e: launch failed (${code}), retrying`)
        await sleep(code === 'EADDRINUSE' ? 250 : 2000)
      }
    }
  }

  private launchOnce(listen: string): Promise<void> {
    const env: NodeJS.ProcessEnv = {}
    // Only what the test sets: a developer's MICRODASH_* must not change the server under test.
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MICRODASH_')) env[k] = v
    env.MICRODASH_ADMIN_TOKEN = this.adminToken
    env.MICRODASH_LOG = process.env.E2E_SERVER_LOG || 'info,sqlx=warn'
    const args = [
      'serve',
      '--listen', listen,
      '--mqtt-listen', 'off',
      '--database-url', this.databaseUrl,
      '--data-dir', this.dataDir,
      '--dashboard-dir', DASHBOARD_DIST,
      '--log-format', 'json',
    ]
    this.starts++
    this.writeLog(`# e2e: start #${this.starts}: ${SERVER_BIN} ${args.join(' ')}`)
    const child = spawn(SERVER_BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })

    return new Promise<void>((resolve, reject) => {
      let settled = false
      let bindError = false
      const tail: string[] = []
      const fail = (err: Error) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
        reject(err)
      }
      const timer = setTimeout(
        () => fail(new Error(`microdash did not log its listen address within ${START_TIMEOUT_MS} ms:\n${tail.join('\n')}`)),
        START_TIMEOUT_MS,
      )
      const onLine = (line: string) => {
        this.writeLog(line)
        tail.push(line)
        if (tail.length > 30) tail.shift()
        if (/cannot listen on|address already in use/i.test(line)) bindError = true
        if (settled || !line.startsWith('{')) return
        try {
          const listenAt = (JSON.parse(line) as { fields?: { listen?: string } }).fields?.listen
          if (listenAt) {
            settled = true
            clearTimeout(timer)
            this.address = listenAt
            this.proc = child
            resolve()
          }
        } catch {
          // Not JSON: kept in the log only.
        }
      }
      readline.createInterface({ input: child.stdout! }).on('line', onLine)
      readline.createInterface({ input: child.stderr! }).on('line', onLine)
      child.once('error', (err) => fail(err))
      this.exited = new Promise<void>((done) => {
        child.once('exit', (code, signal) => {
          this.writeLog(`# e2e: process exited (code ${code}, signal ${signal})`)
          if (this.proc === child) this.proc = null
          done()
          if (!settled) {
            const err = new Error(
              `microdash exited (code ${code}, signal ${signal}) before listening:\n${tail.join('\n')}`,
            ) as NodeJS.ErrnoException
            if (bindError) err.code = 'EADDRINUSE'
            fail(err)
          }
        })
      })
    })
  }

  /**
   * Stop the process. `graceful`: SIGTERM, then SIGKILL if it has not exited after the grace
   * period (recorded in `forcedStops`). `kill`: SIGKILL at once, like a crash.
   */
  async stop(mode: StopMode = 'graceful'): Promise<StopResult> {
    const child = this.proc
    const started = Date.now()
    if (!child) return { forced: false, ms: 0 }
    if (mode === 'kill') {
      child.kill('SIGKILL')
      await this.exited
      return { forced: false, ms: Date.now() - started }
    }
    child.kill('SIGTERM')
    const exitedInTime = await Promise.race([this.exited.then(() => true), sleep(STOP_GRACE_MS).then(() => false)])
    if (!exitedInTime) {
      this.forcedStops.push(`microdash did not exit within ${STOP_GRACE_MS} ms of SIGTERM; it was SIGKILLed`)
      this.writeLog(`# e2e: SIGTERM did not stop the server within ${STOP_GRACE_MS} ms; sending SIGKILL`)
      child.kill('SIGKILL')
      await this.exited
    }
    return { forced: !exitedInTime, ms: Date.now() - started }
  }

  /** Stop, then start again on the same address with the same data. */
  async restart(mode: StopMode = 'graceful'): Promise<StopResult> {
    const result = await this.stop(mode)
    await this.launch(this.address)
    return result
  }

  /** Stop and remove the temp folder (kept with `keepFiles`, e.g. after a failure). */
  async dispose({ keepFiles = false } = {}): Promise<void> {
    await this.stop('graceful')
    await new Promise<void>((r) => this.log.end(r))
    if (!keepFiles && !process.env.E2E_KEEP_SERVER_DIR) fs.rmSync(this.dir, { recursive: true, force: true })
  }
}
