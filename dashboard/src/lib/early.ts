/**
 * The requests of the first page load that do not need the app: the session check and, on the
 * explorer, its chart's first query. The classic script index.html runs first starts them
 * (`earlyUrls`, src/earlyStart.ts, lib/started.ts); `boot.ts`, the first module the entry
 * evaluates (before Vue, the router and the stores), takes them over with `startEarly`, or
 * starts them itself where there is no such script (`vite dev`). They used to start when the
 * router's first guard ran, after the whole entry had been evaluated. The session store takes
 * the started check (`takeEarlySession`), the chart the query (`takePrefetched`,
 * lib/prefetch.ts).
 */
import { api, queryUrl } from '@/api/client'
import type { Session } from '@/api/types'
import type { LocationQuery } from 'vue-router'
import { prefetchQuery, queryParams } from './prefetch'
import { stateFromQuery } from './routeState'
import { dropStarted, startedAt } from './started'

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

type Where = { pathname: string; search: string }

/** The URLs `startEarly(location, now)` asks for. */
export function earlyUrls(location: Where, now: number): string[] {
  const urls = ['/api/v1/session']
  if (EXPLORER.test(location.pathname)) {
    const params = queryParams(stateFromQuery(queryOf(location.search)), now)
    if (params) urls.push(queryUrl(params))
  }
  return urls
}

/**
 * Start the first page's session check and, on the explorer, its first query: at the time the
 * classic script started them, whose responses the API client then takes, or now.
 */
export function startEarly(location: Where, now = startedAt() ?? Date.now()): void {
  session = api.getSession()
  // Taken by the session store; a failure is its to report.
  session.catch(() => undefined)
  if (EXPLORER.test(location.pathname)) prefetchQuery(stateFromQuery(queryOf(location.search)), now)
  dropStarted()
}

/** The session check `startEarly` started, once; `null` if there is none. */
export function takeEarlySession(): Promise<Session | null> | null {
  const s = session
  session = null
  return s
}
