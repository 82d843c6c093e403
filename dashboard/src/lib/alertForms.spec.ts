import { describe, expect, it } from 'vitest'
import { ApiError } from '@/api/client'
import type { AlertRule } from '@/api/types'
import {
  channelToForm,
  checkChannelForm,
  checkRuleForm,
  emptyChannelForm,
  emptyRuleForm,
  errorFor,
  fieldErrorsOf,
  formToChannel,
  formToRule,
  isDuration,
  parsePairs,
  ruleToForm,
} from './alertForms'

const rule: AlertRule = {
  name: 'high-cpu',
  metric: 'cpu.usage',
  match: { host: 'web-1' },
  condition: { aggregation: 'avg', window: '1m', op: '>', threshold: 90 },
  for: '2m',
  keepFiringFor: '0s',
  severity: 'critical',
  noData: { state: 'NODATA', after: '5m' },
  channels: ['ops-webhook'],
  labels: { team: 'a' },
  annotations: { summary: 'CPU {{ $value }}% on {{ $labels.host }}' },
  createdAt: 1,
  updatedAt: 2,
  status: { state: 'OK', instances: 0, firing: 0 },
}

describe('rule forms', () => {
  it('round-trip a rule into the ★ spec shape', () => {
    const { createdAt, updatedAt, status, ...spec } = rule
    void createdAt, void updatedAt, void status
    expect(formToRule(ruleToForm(rule))).toEqual(spec)
  })

  it('check what the browser can, naming the server fields', () => {
    const form = { ...emptyRuleForm(), name: 'Bad Name', metric: '9x', window: '', threshold: 'high', for: '2 min' }
    expect(Object.keys(checkRuleForm(form)).sort()).toEqual(['condition.threshold', 'condition.window', 'for', 'metric', 'name'])
    const ok = { ...emptyRuleForm(), name: 'cpu', metric: 'cpu.usage', threshold: '90' }
    expect(checkRuleForm(ok)).toEqual({})
    expect(checkRuleForm({ ...ok, aggregation: 'last', window: '' })).toEqual({})
    // Names are Kubernetes object names, as the server takes them (the operator's NAMESPACE.NAME).
    for (const name of ['team-a.high-cpu', 'a.b.c', 'x'.repeat(253)]) expect(checkRuleForm({ ...ok, name })).toEqual({})
    for (const name of ['a..b', '.a', 'a.', 'a-.b', 'x'.repeat(254)]) expect(Object.keys(checkRuleForm({ ...ok, name }))).toEqual(['name'])
  })

  it('read durations and label pairs like the server', () => {
    for (const d of ['0', '0s', '90s', '1h30m', '500ms']) expect(isDuration(d)).toBe(true)
    for (const d of ['90', '5 minutes', '1.5h', '']) expect(isDuration(d)).toBe(false)
    expect(parsePairs('host=web-1, env = prod')).toEqual({ host: 'web-1', env: 'prod' })
    expect(parsePairs('host')).toBeNull()
    expect(parsePairs('')).toEqual({})
  })
})

describe('channel forms', () => {
  it('keep `<set>` secrets as they are so the server keeps the stored one', () => {
    const form = channelToForm({ name: 'hook', webhook: { url: 'https://x/y', hmacSecret: '<set>' }, repeatInterval: '1h' })
    expect(formToChannel(form)).toEqual({
      name: 'hook',
      webhook: { url: 'https://x/y', hmacSecret: '<set>' },
      sendResolved: true,
      repeatInterval: '1h',
    })
  })

  it('build email channels and check their fields', () => {
    const form = { ...emptyChannelForm(), name: 'mail', kind: 'email' as const, to: 'a@x.io, b@x.io', from: 'md@x.io', host: 'smtp.x.io', port: '587', username: 'u', password: 'p' }
    expect(checkChannelForm(form)).toEqual({})
    expect(formToChannel(form).email).toEqual({
      to: ['a@x.io', 'b@x.io'],
      from: 'md@x.io',
      smtp: { host: 'smtp.x.io', port: 587, tls: 'starttls', username: 'u', password: 'p' },
    })
    expect(Object.keys(checkChannelForm({ ...form, to: '', port: '70000' })).sort()).toEqual(['email.smtp.port', 'email.to'])
  })
})

describe('grouping and inhibition', () => {
  it('a channel groups by labels with its wait and interval, and checks them', () => {
    const form = { ...emptyChannelForm(), name: 'team', url: 'https://x/y', groupBy: 'alertname, host', groupWait: '10s' }
    expect(checkChannelForm(form)).toEqual({})
    const spec = formToChannel(form)
    expect(spec.groupBy).toEqual(['alertname', 'host'])
    expect([spec.groupWait, spec.groupInterval]).toEqual(['10s', '5m'])
    expect(channelToForm(spec).groupBy).toBe('alertname, host')
    expect(formToChannel({ ...form, groupBy: ' ' }).groupBy).toBeUndefined()
    expect(Object.keys(checkChannelForm({ ...form, groupBy: 'bad label', groupWait: 'soon' })).sort()).toEqual(['groupBy', 'groupWait'])
  })

  it('a rule inhibits matching alerts with equal labels, and round-trips', () => {
    const form = { ...emptyRuleForm(), name: 'host-down', metric: 'up', aggregation: 'last' as const, window: '', op: '<' as const,
      threshold: '1', inhibitsEnabled: true, inhibitsMatch: 'severity=warning', inhibitsEqual: 'host, dc' }
    expect(checkRuleForm(form)).toEqual({})
    const spec = formToRule(form)
    expect(spec.inhibits).toEqual({ match: { severity: 'warning' }, equal: ['host', 'dc'] })
    expect(ruleToForm(spec)).toMatchObject({ inhibitsEnabled: true, inhibitsMatch: 'severity=warning', inhibitsEqual: 'host, dc' })
    expect(formToRule({ ...form, inhibitsEnabled: false }).inhibits).toBeUndefined()
    expect(Object.keys(checkRuleForm({ ...form, inhibitsEqual: 'a b' }))).toEqual(['inhibits.equal'])
  })
})

describe('server errors', () => {
  it('land on their fields, nested ones on their parent', () => {
    const e = new ApiError(422, 'Unprocessable Entity', 'condition.window: …', 'condition.window', [
      { field: 'condition.window', message: 'needs a window' },
      { field: 'match.bad key', message: 'bad key' },
    ])
    const errors = fieldErrorsOf(e)
    expect(errorFor(errors, 'condition.window')).toBe('needs a window')
    expect(errorFor(errors, 'match')).toBe('match.bad key: bad key')
    expect(errorFor(errors, 'metric')).toBeUndefined()
    expect(fieldErrorsOf(new ApiError(409, 'Conflict', 'rule "x" already exists'))).toEqual({ _form: 'rule "x" already exists' })
  })
})
