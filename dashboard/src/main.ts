// First, for its effect: the session check and the first query start now (src/boot.ts).
import './boot'
import { createApp } from 'vue'
import { createPinia } from 'pinia'
import App from './App.vue'
import { router } from './router'
import { setUnauthorizedHandler } from './api/client'
import { useSessionStore } from './stores/session'
import { useTheme } from './composables/useTheme'
import './style.css'

const app = createApp(App)
const pinia = createPinia()
app.use(pinia)
app.use(router)

useTheme()

// Any 401 means the cookie lapsed: forget the session and ask for a token again.
setUnauthorizedHandler(() => {
  useSessionStore(pinia).expire()
  const current = router.currentRoute.value
  if (current.name !== 'login') {
    void router.push({ name: 'login', query: { redirect: current.fullPath } })
  }
})

// Mount once the first navigation is settled (session checked, the page's code and first query
// in): the page is rendered once, as it is, instead of a "Checking session…" page that is then
// patched into it. Until then index.html's own placeholder says the same.
void router
  .isReady()
  .catch(() => undefined)
  .then(() => app.mount('#app'))
