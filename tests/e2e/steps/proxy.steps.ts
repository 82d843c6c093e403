/**
 * The dashboard behind Debian's nginx (installed by the test command), a real process on
 * loopback in front of the scenario's server: with its default proxy settings, with one that
 * buffers the live stream whatever the server asks (`proxy_ignore_headers X-Accel-Buffering`),
 * and with one that cuts it after 2 s without data (`proxy_read_timeout 2s`, far below the
 * server's 15 s keep-alive).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import type { Page } from '@playwright/test'
import { After, Given, Then, When, expect } from '../support/fixtures'

/** The proxy in front of each page's server, and every nginx started (stopped after each scenario). */
const proxyOf = new WeakMap<Page, string>()
const running: ChildProcess[] = []

async function freePort(): Promise<number> {
  const probe = net.createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const port = (probe.address() as net.AddressInfo).port
  await new Promise((resolve) => probe.close(resolve))
  return port
}

/** nginx with nothing but `proxy_pass` (plus `streamExtra` for the stream's location). */
async function startNginx(upstream: string, streamExtra: string): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-nginx-'))
  const port = await freePort()
  const conf = `user root;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events {}
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
    location /api/v1/stream {
      proxy_pass ${upstream};
      ${streamExtra}
    }
    location / {
      proxy_pass ${upstream};
    }
  }
}
`
  fs.writeFileSync(path.join(dir, 'nginx.conf'), conf)
  const child = spawn('/usr/sbin/nginx', ['-g', 'daemon off;', '-p', dir, '-c', path.join(dir, 'nginx.conf')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  running.push(child)
  const url = `http://127.0.0.1:${port}`
  await expect
    .poll(async () => (await fetch(`${url}/healthz`).catch(() => null))?.status ?? 0, {
      message: 'nginx should come up and reach the server',
      timeout: 10_000,
    })
    .toBe(200)
  return url
}

After(async () => {
  for (const child of running.splice(0)) child.kill('SIGTERM')
})

Given('nginx with its default proxy settings is in front of the server', async ({ page, server }) => {
  proxyOf.set(page, await startNginx(server.baseURL, ''))
})

Given(
  'nginx is in front of the server and buffers the live stream whatever the server asks',
  async ({ page, server }) => {
    proxyOf.set(page, await startNginx(server.baseURL, 'proxy_ignore_headers X-Accel-Buffering;'))
  },
)

Given(
  'nginx is in front of the server and cuts the live stream after {int} seconds without data',
  async ({ page, server }, seconds: number) => {
    proxyOf.set(page, await startNginx(server.baseURL, `proxy_read_timeout ${seconds}s;`))
  },
)

When('I open {string} through the proxy', async ({ page }, target: string) => {
  const proxy = proxyOf.get(page)
  expect(proxy, 'a previous step started the proxy').toBeDefined()
  await page.goto(`${proxy}${target}`)
})

Then('within {int} seconds the live indicator shows {string}', async ({ page }, seconds: number, state: string) => {
  await expect(page.getByTestId('live-indicator')).toHaveAttribute('data-state', state, { timeout: seconds * 1000 })
})
