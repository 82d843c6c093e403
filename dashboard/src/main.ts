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

app.mount('#app')
