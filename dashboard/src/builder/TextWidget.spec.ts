import { describe, expect, it } from 'vitest'
import { mount } from '@vue/test-utils'
import TextWidget from './TextWidget.vue'

describe('TextWidget', () => {
  it('renders markdown', () => {
    const w = mount(TextWidget, { props: { text: '# Title\n\n**bold** and [a link](https://example.org)' } })
    expect(w.find('h1').text()).toBe('Title')
    expect(w.find('strong').text()).toBe('bold')
    expect(w.find('a').attributes('href')).toBe('https://example.org')
  })

  it('sanitises what the markdown lets through', () => {
    const w = mount(TextWidget, {
      props: { text: 'hi <img src="x" onerror="alert(1)"> <script>alert(2)</script> [x](javascript:alert(3)) <iframe src="https://e.org"></iframe>' },
    })
    const html = w.html()
    expect(html).not.toContain('onerror')
    expect(html).not.toContain('<script')
    expect(html).not.toContain('javascript:')
    expect(html).not.toContain('<iframe')
    expect(w.find('img').exists()).toBe(true)
  })

  it('says when there is no text', () => {
    const w = mount(TextWidget, { props: { text: '  ' } })
    expect(w.find('[data-testid="state-empty"]').exists()).toBe(true)
  })
})
