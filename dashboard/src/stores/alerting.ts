/**
 * Alerting: current alert states (live over `/api/v1/alerts/stream`, with polling as the
 * fallback), the transition history, rules, channels and their delivery logs.
 */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { ALERT_STREAM_URL, api, ApiError } from '@/api/client'
import type { AlertInstance, AlertRule, AlertTransition, Channel, ChannelSpec, Delivery, RuleSpec } from '@/api/types'
import { errorText } from '@/lib/format'

/** How often lists refresh when the live stream is not available. */
export const POLL_MS = 15_000
/** Several transitions in a burst cause one refresh. */
const REFRESH_DEBOUNCE_MS = 150

export const useAlertingStore = defineStore('alerting', () => {
  const alerts = ref<AlertInstance[]>([])
  const history = ref<AlertTransition[]>([])
  const rules = ref<AlertRule[]>([])
  const channels = ref<Channel[]>([])
  const deliveries = ref<Record<string, Delivery[]>>({})
  const loading = ref(false)
  const loaded = ref(false)
  const error = ref<string | null>(null)
  /** The server answered 404: this version or process has no alerting. */
  const notEnabled = ref(false)
  /** 'live' while the transition stream is open, 'polling' otherwise. */
  const mode = ref<'live' | 'polling' | 'off'>('off')

  const firing = computed(() => alerts.value.filter((a) => a.state === 'FIRING').length)

  async function fetchAlerts(): Promise<void> {
    try {
      const [a, h] = await Promise.all([api.alerts(), api.alertHistory()])
      alerts.value = a
      history.value = h
      error.value = null
      notEnabled.value = false
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) notEnabled.value = true
      else error.value = errorText(e)
    }
  }

  async function fetchConfig(): Promise<void> {
    try {
      const [r, c] = await Promise.all([api.rules(), api.channels()])
      rules.value = r
      channels.value = c
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) notEnabled.value = true
      else error.value = errorText(e)
    }
  }

  async function fetchAll(): Promise<void> {
    loading.value = true
    try {
      await Promise.all([fetchAlerts(), fetchConfig()])
      loaded.value = true
    } finally {
      loading.value = false
    }
  }

  async function saveRule(rule: RuleSpec, isNew: boolean): Promise<AlertRule> {
    const saved = await api.saveRule(rule, isNew)
    rules.value = [...rules.value.filter((r) => r.name !== saved.name), saved].sort((a, b) => a.name.localeCompare(b.name))
    return saved
  }

  async function deleteRule(name: string): Promise<void> {
    await api.deleteRule(name)
    rules.value = rules.value.filter((r) => r.name !== name)
    alerts.value = alerts.value.filter((a) => a.rule !== name)
  }

  async function saveChannel(channel: ChannelSpec, isNew: boolean): Promise<Channel> {
    const saved = await api.saveChannel(channel, isNew)
    channels.value = [...channels.value.filter((c) => c.name !== saved.name), saved].sort((a, b) =>
      a.name.localeCompare(b.name),
    )
    return saved
  }

  async function deleteChannel(name: string): Promise<void> {
    await api.deleteChannel(name)
    channels.value = channels.value.filter((c) => c.name !== name)
  }

  async function loadDeliveries(name: string): Promise<Delivery[]> {
    const list = await api.deliveries(name)
    deliveries.value = { ...deliveries.value, [name]: list }
    return list
  }

  async function testChannel(name: string) {
    const result = await api.testChannel(name)
    await Promise.all([loadDeliveries(name), fetchConfig()])
    return result
  }

  // --- live updates ---
  let source: EventSource | null = null
  let pollTimer: ReturnType<typeof setInterval> | null = null
  let refreshTimer: ReturnType<typeof setTimeout> | null = null
  let watchers = 0

  function scheduleRefresh(): void {
    if (refreshTimer) return
    refreshTimer = setTimeout(() => {
      refreshTimer = null
      void fetchAlerts()
      void fetchConfig()
    }, REFRESH_DEBOUNCE_MS)
  }

  function onTransition(e: MessageEvent): void {
    try {
      const t = JSON.parse(String(e.data)) as AlertTransition
      if (t.id === undefined || !history.value.some((h) => h.id === t.id)) history.value = [t, ...history.value]
      const i = alerts.value.findIndex(
        (a) => a.rule === t.rule && JSON.stringify(a.labels) === JSON.stringify(t.labels),
      )
      if (i >= 0) {
        const next = [...alerts.value]
        const current = next[i]!
        next[i] = { ...current, state: t.to, value: t.value, since: t.at }
        alerts.value = next
      }
    } catch {
      // A malformed event: the refresh below corrects everything.
    }
    scheduleRefresh()
  }

  function startPolling(): void {
    mode.value = 'polling'
    if (!pollTimer) pollTimer = setInterval(() => void fetchAlerts(), POLL_MS)
  }

  function stopPolling(): void {
    if (pollTimer) clearInterval(pollTimer)
    pollTimer = null
  }

  /** Keeps the lists current while a page shows them; call the returned function to stop. */
  function watch(): () => void {
    watchers += 1
    if (watchers === 1) {
      if (typeof EventSource === 'undefined') startPolling()
      else {
        source = new EventSource(ALERT_STREAM_URL)
        source.addEventListener('transition', onTransition as EventListener)
        source.addEventListener('lagged', scheduleRefresh)
        source.onopen = () => {
          mode.value = 'live'
          stopPolling()
          // Anything that changed while the stream was down.
          scheduleRefresh()
        }
        // The browser reconnects by itself; poll meanwhile so the page never goes stale.
        source.onerror = () => startPolling()
      }
    }
    let stopped = false
    return () => {
      if (stopped) return
      stopped = true
      watchers -= 1
      if (watchers === 0) {
        source?.close()
        source = null
        stopPolling()
        if (refreshTimer) clearTimeout(refreshTimer)
        refreshTimer = null
        mode.value = 'off'
      }
    }
  }

  return {
    alerts,
    history,
    rules,
    channels,
    deliveries,
    loading,
    loaded,
    error,
    notEnabled,
    mode,
    firing,
    fetchAll,
    fetchAlerts,
    fetchConfig,
    saveRule,
    deleteRule,
    saveChannel,
    deleteChannel,
    loadDeliveries,
    testChannel,
    watch,
  }
})
