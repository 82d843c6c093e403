/**
 * The requests of the first page load that do not need the app: the session check and, on the
 * explorer, its chart's first query. `boot.ts`, the first module the entry evaluates (before Vue,
 * the router and the stores), starts them; they used to start when the router's first guard
 * ran, after the whole entry had been evaluated. The session store takes the started check
 * (`takeEarlySession`), the chart the query (`takePrefetched`, lib/prefetch.ts).
 */
import { api } from '@/api/client'
import type { Session } from '@/api/types'
import type { LocationQuery } from 'vue-router'
import { prefetchQuery } from './prefetch'
import { stateFromQuery } from './routeState'

/** The explorer's path in src/router.ts (its first query can be read from the URL). */
const EXPLORER = /^\/explorer\/?$/

let session: Promise<Session | null> | null = null

/** A URL's query as vue-router reads it: `+` is a space, a repeated key gives an array. */
export function queryOf(search: string): LocationQuery {
  const out: LocationQuery = {}
  for (const [k, v] of new URLSearchParams(search)) {
    const prev = out[k]
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v]
  }
  return out
}

/** Start the first page's session check and, on the explorer, its first query. */
export function startEarly(location: { pathname: string; search: string }, now = Date.now()): void {
  session = api.getSession()
  // Taken by the session store; a failure is its to report.
  session.catch(() => undefined)
  if (EXPLORER.test(location.pathname)) prefetchQuery(stateFromQuery(queryOf(location.search)), now)
}

/** The session check `startEarly` started, once; `null` if there is none. */
export function takeEarlySession(): Promise<Session | null> | null {
  const s = session
  session = null
  return s
}
