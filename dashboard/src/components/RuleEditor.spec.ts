import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { flushPromises, mount } from '@vue/test-utils'
import RuleEditor from './RuleEditor.vue'
import { mockFetch } from '@/test/fakes'

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.unstubAllGlobals())

async function fill(wrapper: ReturnType<typeof mount>, values: Record<string, string>) {
  for (const [name, value] of Object.entries(values)) await wrapper.get(`[name="${name}"]`).setValue(value)
}

const errorUnder = (wrapper: ReturnType<typeof mount>, field: string) =>
  wrapper.find(`[data-field="${field}"] [data-testid="field-error"]`)

describe('RuleEditor', () => {
  it('shows local mistakes next to their fields without calling the server', async () => {
    const fetch = mockFetch({})
    const wrapper = mount(RuleEditor, { props: { rule: null, channels: [] } })
    await fill(wrapper, { name: 'cpu', metric: 'cpu.usage', threshold: 'lots', for: '2 minutes' })
    await wrapper.get('form').trigger('submit')
    expect(errorUnder(wrapper, 'condition.threshold').text()).toBe('a number')
    expect(errorUnder(wrapper, 'for').text()).toContain('duration')
    expect(fetch).not.toHaveBeenCalled()
  })

  it("puts the server's errors next to the fields it names and emits saved on success", async () => {
    let attempt = 0
    mockFetch({
      'POST /api/v1/rules': (_url, init) => {
        attempt += 1
        if (attempt === 1) {
          return {
            status: 422,
            body: {
              title: 'Unprocessable Entity',
              detail: 'channels[0]: …',
              field: 'channels[0]',
              errors: [{ field: 'annotations.summary', message: 'unknown placeholder `{{ $valeu }}`' }],
            },
          }
        }
        return { status: 201, body: { ...JSON.parse(String(init.body)), createdAt: 1, updatedAt: 1, status: { state: 'OK', instances: 0, firing: 0 } } }
      },
    })
    const wrapper = mount(RuleEditor, { props: { rule: null, channels: ['ops'] } })
    await fill(wrapper, { name: 'cpu', metric: 'cpu.usage', threshold: '90', summary: 'CPU {{ $valeu }}' })
    await wrapper.get('[name="channel-ops"]').setValue(true)
    await wrapper.get('form').trigger('submit')
    await flushPromises()
    expect(errorUnder(wrapper, 'annotations.summary').text()).toContain('unknown placeholder')
    await wrapper.get('form').trigger('submit')
    await flushPromises()
    expect(wrapper.emitted('saved')).toEqual([['cpu']])
  })
})
