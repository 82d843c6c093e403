/**
 * Requests the page started before its modules ran: `src/earlyStart.ts`, built into the classic
 * script `assets/preload-[hash].js` that index.html runs first (scripts/routePreload.ts), starts
 * the first page's session check and first query ~100 ms before the entry's modules are
 * evaluated (module scripts wait for the document and its styles), and leaves the responses
 * here by URL. The API client takes one instead of fetching when it asks for the same URL
 * (`takeStarted`), once; `lib/early.ts` asks for them at the same `at`, so the URLs are the same.
 */

export interface Started {
  /** `Date.now()` when they were started: the `now` of their time ranges. */
  at: number
  responses: Record<string, Promise<Response>>
}

declare global {
  interface Window {
    __microdashStarted?: Started
  }
}

/** What the API client sends with a GET (`api/client.ts`, `request`). */
export const GET_INIT: RequestInit = { method: 'GET', headers: { Accept: 'application/json' }, credentials: 'same-origin' }

/** Start a GET of each URL and leave it for the app. */
export function startRequests(urls: string[], at: number): void {
  const responses: Record<string, Promise<Response>> = {}
  for (const url of urls) {
    const response = fetch(url, GET_INIT)
    // Whoever takes it sees a failure; one nobody takes is not an unhandled rejection.
    response.catch(() => undefined)
    responses[url] = response
  }
  window.__microdashStarted = { at, responses }
}

/** When the started requests were started, if there are any. */
export function startedAt(): number | undefined {
  return typeof window === 'undefined' ? undefined : window.__microdashStarted?.at
}

/** The started response for `url`, once. */
export function takeStarted(url: string): Promise<Response> | undefined {
  const started = typeof window === 'undefined' ? undefined : window.__microdashStarted
  const response = started?.responses[url]
  if (response) delete started!.responses[url]
  return response
}

/** Forget the started requests nobody took: a later request of the same URL must not get an old answer. */
export function dropStarted(): void {
  if (typeof window !== 'undefined') delete window.__microdashStarted
}
