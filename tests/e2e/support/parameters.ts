/** Cucumber parameter types shared by the step files. */
import { defineParameterType } from 'playwright-bdd'

/** `the default tenant` | `the tenant "team-b"` → the tenant's name. */
defineParameterType({
  name: 'tenant',
  regexp: /the default tenant|the tenant "[^"]+"/,
  transformer: (s: string) => (s === 'the default tenant' ? 'default' : s.slice('the tenant "'.length, -1)),
})

export type TokenRef = { tenant: string } | { literal: string }

/** `the default tenant's token` | `the token of the tenant "team-b"` | `the token "…"`. */
defineParameterType({
  name: 'token',
  regexp: /the default tenant's token|the token of the tenant "[^"]+"|the token "[^"]*"/,
  transformer: (s: string): TokenRef => {
    if (s === "the default tenant's token") return { tenant: 'default' }
    if (s.startsWith('the token of the tenant "')) return { tenant: s.slice('the token of the tenant "'.length, -1) }
    return { literal: s.slice('the token "'.length, -1) }
  },
})
