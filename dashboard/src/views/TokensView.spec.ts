import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { flushPromises, mount } from '@vue/test-utils'
import TokensView from './TokensView.vue'
import { useSessionStore } from '@/stores/session'
import { mockFetch } from '@/test/fakes'

const push = vi.fn()
vi.mock('vue-router', () => ({ useRouter: () => ({ push }) }))

const TOKENS = {
  tokens: [
    { id: 1, prefix: 'mdt_aaaaaa', scopes: ['ingest', 'read', 'admin'], created_at: 1_700_000_000_000, last_used_at: 1_700_000_100_000 },
    { id: 2, prefix: 'mdt_bbbbbb', scopes: ['read'], created_at: 1_700_000_000_000, expires_at: 4_000_000_000_000 },
  ],
  current: 1,
}

function loggedIn(scopes: string[]) {
  const session = useSessionStore()
  session.session = { tenant: 'acme', scopes }
  session.status = 'authenticated'
  return session
}

beforeEach(() => {
  setActivePinia(createPinia())
  push.mockReset()
})
afterEach(() => vi.unstubAllGlobals())

describe('TokensView', () => {
  it('lists the tokens with the session’s own marked and never asks without the admin scope', async () => {
    const fetch = mockFetch({ 'GET /api/v1/tokens': { body: TOKENS } })
    loggedIn(['ingest', 'read', 'admin'])
    const wrapper = mount(TokensView)
    expect(wrapper.find('[data-testid="state-loading"]').exists()).toBe(true)
    await flushPromises()
    const rows = wrapper.findAll('[data-testid="token-row"]')
    expect(rows).toHaveLength(2)
    expect(rows[0]!.text()).toContain('this session')
    expect(rows[1]!.text()).not.toContain('this session')
    expect(rows[1]!.text()).toContain('read')
    expect(fetch).toHaveBeenCalledTimes(1)

    setActivePinia(createPinia())
    const none = mockFetch({})
    loggedIn(['read'])
    const readOnly = mount(TokensView)
    await flushPromises()
    expect(readOnly.text()).toContain('needs a token with the admin scope')
    expect(none).not.toHaveBeenCalled()
  })

  it('creates a token, shows its secret once, and puts the server’s field errors on the form', async () => {
    let posted: unknown = null
    let attempt = 0
    mockFetch({
      'GET /api/v1/tokens': { body: TOKENS },
      'POST /api/v1/tokens': (_url, init) => {
        attempt += 1
        posted = JSON.parse(String(init.body))
        if (attempt === 1) return { status: 422, body: { title: 'Unprocessable', detail: 'expires_in: must be at least 1s', field: 'expires_in' } }
        return { status: 201, body: { id: 3, tenant: 'acme', scopes: ['ingest'], token: 'mdt_secret_shown_once' } }
      },
    })
    loggedIn(['admin'])
    const wrapper = mount(TokensView)
    await flushPromises()
    await wrapper.get('[data-testid="scope-read"]').setValue(true)
    await wrapper.get('[data-testid="token-form"]').trigger('submit')
    await flushPromises()
    expect(posted).toEqual({ scopes: ['ingest', 'read'], expires_in: '30d' })
    expect(wrapper.get('[data-testid="token-form-error"]').text()).toContain('expires_in')
    expect(wrapper.find('[data-testid="new-token"]').exists()).toBe(false)

    await wrapper.get('[data-testid="token-expiry"]').setValue('')
    await wrapper.get('[data-testid="token-form"]').trigger('submit')
    await flushPromises()
    expect(posted).toEqual({ scopes: ['ingest', 'read'] })
    expect(wrapper.get('[data-testid="new-token"]').text()).toContain('mdt_secret_shown_once')
    expect(wrapper.find('[data-testid="token-form-error"]').exists()).toBe(false)
  })

  it('refuses an empty scope list locally', async () => {
    const fetch = mockFetch({ 'GET /api/v1/tokens': { body: TOKENS } })
    loggedIn(['admin'])
    const wrapper = mount(TokensView)
    await flushPromises()
    await wrapper.get('[data-testid="scope-ingest"]').setValue(false)
    await wrapper.get('[data-testid="token-form"]').trigger('submit')
    await flushPromises()
    expect(wrapper.get('[data-testid="token-form-error"]').text()).toContain('at least one scope')
    expect(fetch).toHaveBeenCalledTimes(1)
  })

  it('revokes another token after confirming, and logs out when revoking its own', async () => {
    const revoked: string[] = []
    mockFetch({
      'GET /api/v1/tokens': { body: TOKENS },
      'DELETE /api/v1/tokens/2': () => (revoked.push('2'), { status: 204 }),
      'DELETE /api/v1/tokens/1': () => (revoked.push('1'), { status: 204 }),
    })
    const confirm = vi.fn().mockReturnValueOnce(false).mockReturnValue(true)
    vi.stubGlobal('confirm', confirm)
    const session = loggedIn(['admin'])
    const wrapper = mount(TokensView)
    await flushPromises()
    const buttons = () => wrapper.findAll('[data-testid="revoke-token"]')
    await buttons()[1]!.trigger('click')
    await flushPromises()
    expect(revoked).toEqual([])
    await buttons()[1]!.trigger('click')
    await flushPromises()
    expect(revoked).toEqual(['2'])
    expect(session.authenticated).toBe(true)

    await buttons()[0]!.trigger('click')
    await flushPromises()
    expect(confirm.mock.calls[2]![0]).toContain('You will be logged out')
    expect(revoked).toEqual(['2', '1'])
    expect(session.authenticated).toBe(false)
    expect(push).toHaveBeenCalledWith({ name: 'login' })
  })
})
