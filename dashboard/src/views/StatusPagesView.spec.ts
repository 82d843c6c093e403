import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { flushPromises, mount } from '@vue/test-utils'
import StatusPagesView from './StatusPagesView.vue'
import { useSessionStore } from '@/stores/session'
import { mockFetch } from '@/test/fakes'

const RULES = {
  rules: [
    { name: 'db-up', metric: 'db.up', condition: { aggregation: 'last', op: '<', threshold: 1 }, status: { state: 'OK', instances: 0, firing: 0 } },
    { name: 'api-errors', metric: 'api.errors', condition: { aggregation: 'last', op: '>', threshold: 5 }, status: { state: 'OK', instances: 0, firing: 0 } },
  ],
}

const PAGE = {
  slug: 'acme',
  title: 'Acme status',
  components: [{ name: 'Database', rule: 'db-up' }],
  publicUrl: '/status/acme',
  createdAt: 1_700_000_000_000,
  updatedAt: 1_700_000_000_000,
}

function loggedIn(scopes: string[]) {
  const session = useSessionStore()
  session.session = { tenant: 'acme', scopes }
  session.status = 'authenticated'
}

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.unstubAllGlobals())

describe('StatusPagesView', () => {
  it('lists the pages with their public link, and offers no editing without the admin scope', async () => {
    mockFetch({ 'GET /api/v1/status-pages': { body: { pages: [PAGE] } }, 'GET /api/v1/rules': { body: RULES } })
    loggedIn(['read'])
    const wrapper = mount(StatusPagesView)
    expect(wrapper.find('[data-testid="state-loading"]').exists()).toBe(true)
    await flushPromises()
    const rows = wrapper.findAll('[data-testid="status-page-row"]')
    expect(rows).toHaveLength(1)
    expect(rows[0]!.text()).toContain('Acme status')
    expect(rows[0]!.text()).toContain('Database')
    expect(wrapper.get('[data-testid="status-page-link"]').attributes('href')).toBe('/status/acme')
    expect(wrapper.find('[data-testid="new-status-page"]').exists()).toBe(false)
    expect(wrapper.find('[data-testid="edit-status-page"]').exists()).toBe(false)
  })

  it('shows the error when the list fails', async () => {
    mockFetch({
      'GET /api/v1/status-pages': { status: 503, body: { title: 'Service Unavailable', detail: 'the database is unavailable; retry later' } },
      'GET /api/v1/rules': { body: RULES },
    })
    loggedIn(['read', 'admin'])
    const wrapper = mount(StatusPagesView)
    await flushPromises()
    expect(wrapper.get('[data-testid="state-error"]').text()).toContain('the database is unavailable')
  })

  it('creates a page from the rules, and puts the server’s field error beside the field', async () => {
    const puts: { url: string; body: unknown }[] = []
    let pages: unknown[] = []
    mockFetch({
      'GET /api/v1/status-pages': () => ({ body: { pages } }),
      'GET /api/v1/rules': { body: RULES },
      'PUT /api/v1/status-pages/taken': (url, init) => {
        puts.push({ url: url.pathname, body: JSON.parse(String(init.body)) })
        return { status: 409, body: { title: 'Conflict', detail: 'the slug "taken" is taken; choose another', field: 'slug' } }
      },
      'PUT /api/v1/status-pages/acme': (url, init) => {
        puts.push({ url: url.pathname, body: JSON.parse(String(init.body)) })
        pages = [PAGE]
        return { status: 201, body: PAGE }
      },
    })
    loggedIn(['read', 'admin'])
    const wrapper = mount(StatusPagesView)
    await flushPromises()
    expect(wrapper.get('[data-testid="state-empty"]').text()).toContain('No status pages')
    await wrapper.get('[data-testid="new-status-page"]').trigger('click')
    await wrapper.get('[data-testid="status-page-slug"]').setValue('taken')
    await wrapper.get('[data-testid="status-page-title"]').setValue('Acme status')
    await wrapper.get('[data-testid="component-name"]').setValue('Database')
    await wrapper.get('[data-testid="component-rule"]').setValue('db-up')
    await wrapper.get('[data-testid="status-page-form"]').trigger('submit')
    await flushPromises()
    expect(wrapper.get('[data-testid="field-error"]').text()).toContain('is taken')
    expect(puts[0]!.body).toEqual({ title: 'Acme status', components: [{ name: 'Database', rule: 'db-up' }] })

    await wrapper.get('[data-testid="status-page-slug"]').setValue('acme')
    await wrapper.get('[data-testid="status-page-form"]').trigger('submit')
    await flushPromises()
    expect(puts[1]!.url).toBe('/api/v1/status-pages/acme')
    expect(wrapper.find('[data-testid="status-page-form"]').exists()).toBe(false)
    expect(wrapper.findAll('[data-testid="status-page-row"]')).toHaveLength(1)
  })

  it('edits a page keeping its slug, and deletes one', async () => {
    let body: unknown = null
    let deleted = false
    vi.stubGlobal('confirm', () => true)
    mockFetch({
      'GET /api/v1/status-pages': () => ({ body: { pages: deleted ? [] : [PAGE] } }),
      'GET /api/v1/rules': { body: RULES },
      'PUT /api/v1/status-pages/acme': (_url, init) => {
        body = JSON.parse(String(init.body))
        return { body: PAGE }
      },
      'DELETE /api/v1/status-pages/acme': () => {
        deleted = true
        return { status: 204 }
      },
    })
    loggedIn(['read', 'admin'])
    const wrapper = mount(StatusPagesView)
    await flushPromises()
    await wrapper.get('[data-testid="edit-status-page"]').trigger('click')
    expect(wrapper.get('[data-testid="status-page-slug"]').attributes('disabled')).toBeDefined()
    await wrapper.get('[data-testid="add-component"]').trigger('click')
    const names = wrapper.findAll('[data-testid="component-name"]')
    await names[1]!.setValue('API')
    await wrapper.findAll('[data-testid="component-rule"]')[1]!.setValue('api-errors')
    await wrapper.get('[data-testid="status-page-form"]').trigger('submit')
    await flushPromises()
    expect(body).toEqual({
      title: 'Acme status',
      components: [
        { name: 'Database', rule: 'db-up' },
        { name: 'API', rule: 'api-errors' },
      ],
    })
    await wrapper.get('[data-testid="delete-status-page"]').trigger('click')
    await flushPromises()
    expect(deleted).toBe(true)
    expect(wrapper.get('[data-testid="state-empty"]').text()).toContain('No status pages')
  })
})
