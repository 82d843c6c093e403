/**
 * The "send data" blocks: how the tools people already run ship metrics into this tenant, with
 * the server's URL and the tenant filled in. The token is never put in a block: each reads it
 * from where that tool takes secrets (a file for Prometheus, the environment for the others).
 */

export interface SendDataBlock {
  id: string
  title: string
  /** Where the block goes, e.g. `prometheus.yml`. */
  file: string
  text: string
}

/** `origin`: the server as the browser reaches it (`https://metrics.example`); `tenant`: its name. */
export function sendDataBlocks(origin: string, tenant: string): SendDataBlock[] {
  const base = origin.replace(/\/+$/, '')
  const host = hostOf(base)
  return [
    {
      id: 'curl',
      title: 'HTTP (JSON)',
      file: 'shell',
      text: `curl -X POST ${base}/api/v1/metrics \\
  -H "Authorization: Bearer $MICRODASH_TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{"metric":"cpu.usage","value":42.5,"labels":{"host":"web-1"}}'`,
    },
    {
      id: 'prometheus',
      title: 'Prometheus remote_write',
      file: 'prometheus.yml',
      text: `remote_write:
  - url: ${base}/api/v1/write
    authorization:
      # A token of tenant ${tenant} with the ingest scope, alone in this file.
      credentials_file: /etc/prometheus/microdash-token`,
    },
    {
      id: 'otel',
      title: 'OpenTelemetry Collector',
      file: 'otelcol.yaml',
      text: `exporters:
  otlphttp/microdash:
    metrics_endpoint: ${base}/v1/metrics
    headers:
      # A token of tenant ${tenant} with the ingest scope.
      Authorization: "Bearer \${env:MICRODASH_TOKEN}"
service:
  pipelines:
    metrics:
      exporters: [otlphttp/microdash]`,
    },
    {
      id: 'telegraf',
      title: 'Telegraf',
      file: 'telegraf.conf',
      text: `[[outputs.influxdb_v2]]
  urls = ["${base}"]
  ## A token of tenant ${tenant} with the ingest scope.
  token = "$MICRODASH_TOKEN"
  organization = "${tenant}"
  bucket = "${tenant}"`,
    },
    {
      id: 'mqtt',
      title: 'MQTT',
      file: 'shell',
      text: `mosquitto_pub -h ${host} -p 1883 -u ${tenant} -P "$MICRODASH_TOKEN" \\
  -q 1 -t metrics/${tenant}/cpu.usage -m 42.5`,
    },
  ]
}

function hostOf(origin: string): string {
  try {
    return new URL(origin).hostname
  } catch {
    return 'localhost'
  }
}
