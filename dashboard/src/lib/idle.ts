/**
 * Work that no first paint waits for (the pickers' catalog: metric names, label values) runs
 * when the page is idle, i.e. after the chart is drawn, at the latest after `timeoutMs`.
 * Where the browser lacks `requestIdleCallback`, at once.
 */
export function whenIdle(fn: () => void, timeoutMs = 500): void {
  if (typeof requestIdleCallback === 'function') requestIdleCallback(() => fn(), { timeout: timeoutMs })
  else fn()
}
