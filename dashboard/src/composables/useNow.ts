import { onBeforeUnmount, ref } from 'vue'

/** A clock for "12s ago" labels, ticking every `intervalMs`. */
export function useNow(intervalMs = 1000) {
  const now = ref(Date.now())
  const timer = setInterval(() => (now.value = Date.now()), intervalMs)
  onBeforeUnmount(() => clearInterval(timer))
  return now
}
