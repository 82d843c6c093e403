/**
 * Dark mode: an explicit choice is kept in localStorage; without one the system
 * preference (`prefers-color-scheme`) decides and is followed live.
 */
import { computed, ref } from 'vue'

const STORAGE_KEY = 'microdash.theme'
type Choice = 'dark' | 'light' | null

const choice = ref<Choice>(readChoice())
const systemDark = ref(false)
let initialized = false

function readChoice(): Choice {
  try {
    const v = localStorage.getItem(STORAGE_KEY)
    return v === 'dark' || v === 'light' ? v : null
  } catch {
    return null
  }
}

const isDark = computed(() => (choice.value ? choice.value === 'dark' : systemDark.value))

function apply(): void {
  document.documentElement.classList.toggle('dark', isDark.value)
  document.documentElement.style.colorScheme = isDark.value ? 'dark' : 'light'
}

function init(): void {
  if (initialized) return
  initialized = true
  const mq = typeof window.matchMedia === 'function' ? window.matchMedia('(prefers-color-scheme: dark)') : null
  systemDark.value = mq?.matches ?? false
  mq?.addEventListener?.('change', (e) => {
    systemDark.value = e.matches
    apply()
  })
  apply()
}

export function useTheme() {
  init()
  function toggle(): void {
    choice.value = isDark.value ? 'light' : 'dark'
    try {
      localStorage.setItem(STORAGE_KEY, choice.value)
    } catch {
      // Private mode: the choice lasts for this page only.
    }
    apply()
  }
  return { isDark, toggle }
}
