import { describe, expect, it } from 'vitest'
import { sendDataBlocks } from './sendData'

describe('the send-data blocks', () => {
  const blocks = sendDataBlocks('https://metrics.example:8443/', 'acme')
  const block = (id: string) => blocks.find((b) => b.id === id)!.text

  it('point each tool at this server and tenant', () => {
    expect(block('prometheus')).toContain('url: https://metrics.example:8443/api/v1/write')
    expect(block('otel')).toContain('metrics_endpoint: https://metrics.example:8443/v1/metrics')
    expect(block('telegraf')).toContain('urls = ["https://metrics.example:8443"]')
    expect(block('telegraf')).toContain('organization = "acme"')
    expect(block('curl')).toContain('https://metrics.example:8443/api/v1/metrics')
    expect(block('mqtt')).toContain('-h metrics.example -p 1883 -u acme')
    expect(block('mqtt')).toContain('-t metrics/acme/cpu.usage')
  })

  it('take the token from where each tool keeps secrets, never inline', () => {
    expect(block('prometheus')).toContain('credentials_file:')
    expect(block('otel')).toContain('${env:MICRODASH_TOKEN}')
    expect(block('telegraf')).toContain('token = "$MICRODASH_TOKEN"')
    for (const b of blocks) expect(b.text).not.toMatch(/mdt_/)
  })

  it('are the tools the issue names, each with its file', () => {
    expect(blocks.map((b) => b.id)).toEqual(['curl', 'prometheus', 'otel', 'telegraf', 'mqtt'])
    expect(blocks.every((b) => b.file && b.title)).toBe(true)
  })
})
