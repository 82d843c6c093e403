import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { defineComponent, h } from 'vue'
import { RouterView, createMemoryHistory, createRouter } from 'vue-router'
import { flushPromises, mount } from '@vue/test-utils'
import SilencesView from './SilencesView.vue'
import AlertsView from './AlertsView.vue'
import { useSessionStore } from '@/stores/session'
import { FakeEventSource, mockFetch } from '@/test/fakes'

const NOW = 1_700_000_000_000
const MIN = 60_000
const HOUR = 60 * MIN

const silence = (id: string, fields: Record<string, unknown>) => ({
  id,
  matchers: { alertname: 'high-cpu', host: 'web-1' },
  startsAt: NOW - HOUR,
  endsAt: NOW + HOUR,
  comment: `comment of ${id}`,
  createdBy: 'ops@example.com',
  createdAt: NOW - HOUR,
  status: 'active',
  ...fields,
})

const SILENCES = [
  silence('ends-later', { endsAt: NOW + 80 * MIN, matchers: { host: 'web-1', alertname: 'high-cpu' }, comment: 'replacing a disk', createdBy: 'ann' }),
  silence('ended-long-ago', { startsAt: NOW - 5 * HOUR, endsAt: NOW - 2 * HOUR, status: 'expired' }),
  silence('starts-later', { startsAt: NOW + HOUR, endsAt: NOW + 3 * HOUR, status: 'pending', matchers: { alertname: 'db-down' } }),
  silence('ends-soon', { endsAt: NOW + 10 * MIN, matchers: { region: 'eu' } }),
  silence('ended-recently', { endsAt: NOW - HOUR, status: 'expired' }),
]

const RULES = {
  rules: [
    {
      name: 'high-cpu',
      metric: 'cpu.usage',
      condition: { aggregation: 'last', op: '>', threshold: 90 },
      labels: { team: 'infra' },
      createdAt: 1,
      updatedAt: 1,
      status: { state: 'FIRING', instances: 2, firing: 1 },
    },
    { name: 'db-down', metric: 'db.up', condition: { aggregation: 'last', op: '<', threshold: 1 }, createdAt: 1, updatedAt: 1, status: { state: 'OK', instances: 1, firing: 0 } },
  ],
}

function loggedIn(scopes: string[]) {
  const session = useSessionStore()
  session.session = { tenant: 'acme', scopes }
  session.status = 'authenticated'
}

const Stub = defineComponent({ render: () => h('div') })

/** The app's routes that matter here, in memory, with the view mounted under a RouterView. */
async function mountAt(path: string) {
  const router = createRouter({
    history: createMemoryHistory(),
    routes: [
      { path: '/alerts', name: 'alerts', component: AlertsView },
      { path: '/alerts/rules', component: Stub },
      { path: '/alerts/channels', component: Stub },
      { path: '/silences', name: 'silences', component: SilencesView },
    ],
  })
  await router.push(path)
  await router.isReady()
  const wrapper = mount(defineComponent({ render: () => h(RouterView) }), { global: { plugins: [router] } })
  await flushPromises()
  return { wrapper, router }
}

const errorAt = (wrapper: ReturnType<typeof mount>, field: string) =>
  wrapper.find(`[data-field="${field}"] [data-testid="field-error"]`)

beforeEach(() => {
  setActivePinia(createPinia())
  FakeEventSource.install()
  vi.useFakeTimers({ toFake: ['Date'] })
  vi.setSystemTime(NOW)
  localStorage.clear()
})
afterEach(() => {
  vi.useRealTimers()
  vi.unstubAllGlobals()
})

describe('SilencesView', () => {
  it('lists active silences ending soonest first, then pending ones, and the expired ones folded away', async () => {
    mockFetch({ 'GET /api/v1/silences': { body: { silences: SILENCES } }, 'GET /api/v1/rules': { body: RULES } })
    loggedIn(['read', 'admin'])
    const { wrapper } = await mountAt('/silences')

    const current = wrapper.get('[data-testid="silences-current"]')
    const rows = current.findAll('[data-testid="silence-row"]')
    expect(rows.map((r) => r.attributes('data-status'))).toEqual(['active', 'active', 'pending'])
    expect(rows[0]!.text()).toContain('region=eu')
    expect(rows[0]!.get('[data-testid="silence-timing"]').text()).toBe('ends in 10m')
    // Matchers as chips, alertname first whatever the order of the JSON.
    expect(rows[1]!.findAll('[data-testid="silence-matcher"]').map((c) => c.text())).toEqual(['alertname=high-cpu', 'host=web-1'])
    expect(rows[1]!.get('[data-testid="silence-timing"]').text()).toBe('ends in 1h 20m')
    expect(rows[1]!.get('[data-testid="silence-comment-text"]').text()).toBe('replacing a disk')
    expect(rows[1]!.get('[data-testid="silence-author-text"]').text()).toBe('by ann')
    expect(rows[2]!.get('[data-testid="silence-timing"]').text()).toBe('starts in 1h (for 2h)')
    expect(current.findAll('[data-testid="silence-expire"]')).toHaveLength(3)

    // Expired: collapsed, greyed, most recently ended first, never expirable.
    expect(wrapper.find('[data-testid="silences-expired"]').exists()).toBe(false)
    const toggle = wrapper.get('[data-testid="toggle-expired"]')
    expect(toggle.text()).toContain('(2)')
    expect(toggle.attributes('aria-expanded')).toBe('false')
    await toggle.trigger('click')
    const expired = wrapper.get('[data-testid="silences-expired"]')
    expect(expired.classes()).toContain('opacity-60')
    expect(expired.findAll('[data-testid="silence-timing"]').map((t) => t.text())).toEqual(['ended 1h ago', 'ended 2h ago'])
    expect(expired.find('[data-testid="silence-expire"]').exists()).toBe(false)
  })

  it('moves a silence whose end passed while the page is open to the expired ones', async () => {
    mockFetch({ 'GET /api/v1/silences': { body: { silences: [silence('short', { endsAt: NOW + 10_000 })] } } })
    loggedIn(['read'])
    vi.useFakeTimers({ toFake: ['Date', 'setInterval', 'clearInterval'], now: NOW })
    const { wrapper } = await mountAt('/silences')
    expect(wrapper.get('[data-testid="silence-timing"]').text()).toBe('ends in 10s')
    vi.advanceTimersByTime(15_000)
    await flushPromises()
    expect(wrapper.find('[data-testid="silence-row"]').exists()).toBe(false)
    expect(wrapper.get('[data-testid="toggle-expired"]').text()).toContain('(1)')
    expect(wrapper.get('[data-testid="state-empty"]').text()).toContain('No active or pending silences')
  })

  it('offers no form and no expiry without the admin scope, and says why when opened from an alert', async () => {
    const fetch = mockFetch({ 'GET /api/v1/silences': { body: { silences: SILENCES } } })
    loggedIn(['read'])
    const { wrapper } = await mountAt('/silences?new=1&matcher=alertname%3Dhigh-cpu')
    expect(wrapper.findAll('[data-testid="silence-row"]')).toHaveLength(3)
    expect(wrapper.find('[data-testid="silence-expire"]').exists()).toBe(false)
    expect(wrapper.find('[data-testid="new-silence"]').exists()).toBe(false)
    expect(wrapper.find('[data-testid="silence-form"]').exists()).toBe(false)
    expect(wrapper.get('[data-testid="state-empty"]').text()).toContain('needs a token with the admin scope')
    expect(fetch.mock.calls.map((c) => String(c[0]))).toEqual(['/api/v1/silences'])
  })

  it('shows the loading state, then the empty state', async () => {
    mockFetch({ 'GET /api/v1/silences': { body: { silences: [] } }, 'GET /api/v1/rules': { body: RULES } })
    loggedIn(['read', 'admin'])
    const router = createRouter({ history: createMemoryHistory(), routes: [{ path: '/silences', name: 'silences', component: SilencesView }, { path: '/alerts', component: Stub }] })
    await router.push('/silences')
    const wrapper = mount(defineComponent({ render: () => h(RouterView) }), { global: { plugins: [router] } })
    await router.isReady()
    await wrapper.vm.$nextTick()
    expect(wrapper.find('[data-testid="state-loading"]').exists()).toBe(true)
    await flushPromises()
    expect(wrapper.find('[data-testid="state-loading"]').exists()).toBe(false)
    expect(wrapper.get('[data-testid="state-empty"]').text()).toContain('No active or pending silences')
    expect(wrapper.find('[data-testid="toggle-expired"]').exists()).toBe(false)
  })

  it('shows the problem’s detail when the list fails', async () => {
    mockFetch({
      'GET /api/v1/silences': { status: 503, body: { title: 'Service Unavailable', detail: 'the database is unavailable; retry later' } },
      'GET /api/v1/rules': { body: RULES },
    })
    loggedIn(['read', 'admin'])
    const { wrapper } = await mountAt('/silences')
    expect(wrapper.get('[data-testid="state-error"]').text()).toBe('the database is unavailable; retry later')
    expect(wrapper.find('[data-testid="state-empty"]').exists()).toBe(false)
  })

  it('opens the form from a firing alert, prefilled with alertname and the alert’s labels, and creates the silence', async () => {
    let silences: unknown[] = []
    const posted: unknown[] = []
    mockFetch({
      'GET /api/v1/alerts': {
        body: {
          alerts: [
            { rule: 'high-cpu', labels: { host: 'web-1', region: 'eu' }, state: 'FIRING', severity: 'critical', value: 97, since: NOW - MIN },
            { rule: 'db-down', labels: { host: 'db-1' }, state: 'OK', severity: 'warning', value: 1, since: NOW - HOUR },
          ],
        },
      },
      'GET /api/v1/alerts/history': { body: { transitions: [] } },
      'GET /api/v1/rules': { body: RULES },
      'GET /api/v1/channels': { body: { channels: [] } },
      'GET /api/v1/silences': () => ({ body: { silences } }),
      'POST /api/v1/silences': (_url, init) => {
        const body = JSON.parse(String(init.body)) as { matchers: Record<string, string>; comment: string; createdBy: string }
        posted.push(body)
        const at = Date.now()
        const created = silence('new-one', { matchers: body.matchers, startsAt: at, endsAt: at + 4 * HOUR, createdAt: at, comment: body.comment, createdBy: body.createdBy })
        silences = [created]
        return { status: 201, body: created }
      },
    })
    loggedIn(['read', 'admin'])
    const { wrapper, router } = await mountAt('/alerts')

    // Only the firing alert offers it.
    const actions = wrapper.findAll('[data-testid="alert-silence"]')
    expect(actions).toHaveLength(1)
    await actions[0]!.trigger('click')
    await flushPromises()
    expect(router.currentRoute.value.name).toBe('silences')

    const form = wrapper.get('[data-testid="silence-form"]')
    const rows = () =>
      form.findAll('[data-testid="matcher-row"]').map((r) => [
        (r.get('[data-testid="matcher-name"]').element as HTMLInputElement).value,
        (r.get('[data-testid="matcher-value"]').element as HTMLInputElement).value,
      ])
    // alertname first, then the series' labels and the rule's `labels` (they count for silences).
    expect(rows()).toEqual([
      ['alertname', 'high-cpu'],
      ['host', 'web-1'],
      ['region', 'eu'],
      ['team', 'infra'],
    ])
    // The rule names are offered for alertname.
    expect(form.get('[data-testid="matcher-value"]').attributes('list')).toBe('silence-rule-names')
    expect(form.findAll('datalist option').map((o) => o.attributes('value'))).toEqual(['db-down', 'high-cpu'])

    // The user drops what is too narrow: the team and the region.
    await form.findAll('[data-testid="matcher-remove"]')[3]!.trigger('click')
    await form.findAll('[data-testid="matcher-remove"]')[2]!.trigger('click')
    expect(rows()).toEqual([
      ['alertname', 'high-cpu'],
      ['host', 'web-1'],
    ])
    await form.get('[data-testid="duration-4h"]').setValue(true)
    await form.get('[data-testid="silence-comment"]').setValue('replacing a disk')
    await form.get('[data-testid="silence-author"]').setValue('ann')
    // Minutes pass while the form is filled in (the page's clock ticks only every 15 s).
    vi.setSystemTime(NOW + 5 * MIN)
    await form.trigger('submit')
    await flushPromises()

    expect(posted).toEqual([{ matchers: { alertname: 'high-cpu', host: 'web-1' }, endsAt: 'now+4h', comment: 'replacing a disk', createdBy: 'ann' }])
    expect(wrapper.find('[data-testid="silence-form"]').exists()).toBe(false)
    expect(wrapper.find('[data-testid="silence-created"]').exists()).toBe(true)
    // The address no longer reopens the form.
    expect(router.currentRoute.value.fullPath).toBe('/silences')
    const row = wrapper.get('[data-testid="silence-row"]')
    expect(row.attributes('data-status')).toBe('active')
    expect(row.get('[data-testid="silence-timing"]').text()).toBe('ends in 4h')

    // The next form remembers the author (the session has no user name).
    await wrapper.get('[data-testid="new-silence"]').trigger('click')
    expect((wrapper.get('[data-testid="silence-author"]').element as HTMLInputElement).value).toBe('ann')
    expect(wrapper.findAll('[data-testid="matcher-row"]')).toHaveLength(1)
    expect((wrapper.get('[data-testid="matcher-name"]').element as HTMLInputElement).value).toBe('alertname')
  })

  it('puts a 422’s field error at its field, keeps the submit disabled while saving, and checks the matchers itself', async () => {
    const bodies: Record<string, unknown>[] = []
    const fetch = mockFetch({
      'GET /api/v1/silences': { body: { silences: [] } },
      'GET /api/v1/rules': { body: RULES },
      'POST /api/v1/silences': (_url, init) => {
        const body = JSON.parse(String(init.body)) as Record<string, unknown>
        bodies.push(body)
        return bodies.length === 1
          ? { status: 422, body: { title: 'Unprocessable Entity', status: 422, detail: 'says why, in 1 to 1000 characters', field: 'comment' } }
          : { status: 422, body: { title: 'Unprocessable Entity', status: 422, detail: 'must be after startsAt and in the future', field: 'endsAt' } }
      },
    })
    loggedIn(['read', 'admin'])
    const { wrapper } = await mountAt('/silences')
    await wrapper.get('[data-testid="new-silence"]').trigger('click')
    const form = wrapper.get('[data-testid="silence-form"]')

    // A blank value and a label given twice never reach the server.
    await form.get('[data-testid="silence-author"]').setValue('ann')
    await form.trigger('submit')
    expect(errorAt(wrapper, 'matchers').text()).toContain('needs both a label name and a value')
    await form.get('[data-testid="matcher-value"]').setValue('high-cpu')
    await form.get('[data-testid="matcher-add"]').trigger('click')
    await form.findAll('[data-testid="matcher-name"]')[1]!.setValue('alertname')
    await form.findAll('[data-testid="matcher-value"]')[1]!.setValue('db-down')
    await form.trigger('submit')
    expect(errorAt(wrapper, 'matchers').text()).toContain('matched twice')
    expect(fetch.mock.calls.filter((c) => (c[1] as RequestInit | undefined)?.method === 'POST')).toHaveLength(0)
    await form.findAll('[data-testid="matcher-name"]')[1]!.setValue('host')

    // The server's complaint about the comment, under the comment.
    await form.trigger('submit')
    expect(form.get('[data-testid="silence-submit"]').attributes('disabled')).toBeDefined()
    expect(form.get('[data-testid="silence-submit"]').text()).toBe('Saving…')
    await flushPromises()
    expect(bodies[0]).toEqual({ matchers: { alertname: 'high-cpu', host: 'db-down' }, endsAt: 'now+2h', comment: '', createdBy: 'ann' })
    expect(errorAt(wrapper, 'comment').text()).toBe('says why, in 1 to 1000 characters')
    expect(errorAt(wrapper, 'matchers').exists()).toBe(false)
    expect(wrapper.find('[data-testid="silence-form-error"]').exists()).toBe(false)
    expect(form.get('[data-testid="silence-submit"]').attributes('disabled')).toBeUndefined()

    // A custom end is sent as Unix ms; the server's complaint lands at the duration.
    await form.get('[data-testid="silence-comment"]').setValue('maintenance')
    await form.get('[data-testid="duration-custom"]').setValue(true)
    await form.get('[data-testid="silence-ends-at"]').setValue('2023-11-14T20:00')
    await form.trigger('submit')
    await flushPromises()
    expect(bodies[1]!.endsAt).toBe(new Date('2023-11-14T20:00').getTime())
    expect(errorAt(wrapper, 'endsAt').text()).toBe('must be after startsAt and in the future')
    expect(errorAt(wrapper, 'comment').exists()).toBe(false)
    expect(wrapper.find('[data-testid="silence-form"]').exists()).toBe(true)
  })

  it('expires a silence with DELETE once confirmed, and not when the confirmation is declined', async () => {
    const deleted: string[] = []
    let silences = [SILENCES[0]!, SILENCES[3]!]
    const answer = vi.fn(() => false)
    vi.stubGlobal('confirm', answer)
    mockFetch({
      'GET /api/v1/silences': () => ({ body: { silences } }),
      'GET /api/v1/rules': { body: RULES },
      'DELETE /api/v1/silences/ends-later': (url) => {
        deleted.push(url.pathname)
        silences = [SILENCES[3]!, { ...SILENCES[0]!, endsAt: NOW, status: 'expired' }]
        return { status: 204 }
      },
      'DELETE /api/v1/silences/ends-soon': () => ({
        status: 404,
        body: { title: 'Not Found', status: 404, detail: 'no active or pending silence "ends-soon"' },
      }),
    })
    loggedIn(['read', 'admin'])
    const { wrapper } = await mountAt('/silences')
    const row = () => wrapper.findAll('[data-testid="silence-row"]').find((r) => r.text().includes('replacing a disk'))!

    await row().get('[data-testid="silence-expire"]').trigger('click')
    await flushPromises()
    expect(answer).toHaveBeenCalledWith(expect.stringContaining('alertname=high-cpu, host=web-1'))
    expect(deleted).toEqual([])

    answer.mockReturnValue(true)
    await row().get('[data-testid="silence-expire"]').trigger('click')
    await flushPromises()
    expect(deleted).toEqual(['/api/v1/silences/ends-later'])
    expect(wrapper.get('[data-testid="silences-current"]').text()).not.toContain('replacing a disk')
    expect(wrapper.get('[data-testid="toggle-expired"]').text()).toContain('(1)')

    // Already over elsewhere: the problem's detail, and the list as it is now.
    await wrapper.get('[data-testid="silence-expire"]').trigger('click')
    await flushPromises()
    expect(wrapper.get('[data-testid="state-error"]').text()).toContain('no active or pending silence')
  })
})
