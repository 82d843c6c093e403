import { createRouter, createWebHistory, type RouteLocationNormalized, type RouteRecordRaw } from 'vue-router'
import { useSessionStore } from '@/stores/session'
import { prefetchQuery } from '@/lib/prefetch'
import { stateFromQuery } from '@/lib/routeState'
import LoginView from '@/views/LoginView.vue'

const routes: RouteRecordRaw[] = [
  { path: '/login', name: 'login', component: LoginView, meta: { public: true, title: 'Log in' } },
  // Every page but the login is its own chunk, fetched while the session is checked (preload).
  { path: '/', name: 'overview', component: () => import('@/views/OverviewView.vue'), meta: { title: 'Overview' } },
  {
    path: '/explorer',
    name: 'explorer',
    component: () => import('@/views/ExplorerView.vue'),
    meta: { title: 'Explorer', prefetch: (to: RouteLocationNormalized) => prefetchQuery(stateFromQuery(to.query)) },
  },
  { path: '/dashboards', name: 'dashboards', component: () => import('@/views/DashboardsView.vue'), meta: { title: 'Dashboards' } },
  {
    path: '/dashboards/:name',
    name: 'dashboard',
    component: () => import('@/views/DashboardView.vue'),
    props: true,
    meta: { title: 'Dashboard' },
  },
  { path: '/alerts', name: 'alerts', component: () => import('@/views/AlertsView.vue'), meta: { title: 'Alerts' } },
  { path: '/alerts/rules', name: 'alert-rules', component: () => import('@/views/RulesView.vue'), meta: { title: 'Alert rules' } },
  {
    path: '/alerts/channels',
    name: 'alert-channels',
    component: () => import('@/views/ChannelsView.vue'),
    meta: { title: 'Notification channels' },
  },
  { path: '/silences', name: 'silences', component: () => import('@/views/SilencesView.vue'), meta: { title: 'Silences' } },
  {
    path: '/status-pages',
    name: 'status-pages',
    component: () => import('@/views/StatusPagesView.vue'),
    meta: { title: 'Status pages' },
  },
  { path: '/send', name: 'send-data', component: () => import('@/views/SendDataView.vue'), meta: { title: 'Send data' } },
  { path: '/tokens', name: 'tokens', component: () => import('@/views/TokensView.vue'), meta: { title: 'Tokens' } },
  { path: '/:path(.*)*', name: 'not-found', component: () => import('@/views/NotFoundView.vue'), meta: { title: 'Not found' } },
]

export const router = createRouter({
  history: createWebHistory('/'),
  routes,
})

/**
 * Start what a page needs first (its code, its first query) while the session is checked, not
 * after: they arrive together instead of one after the other.
 */
function preload(to: RouteLocationNormalized): void {
  for (const record of to.matched) {
    const component = record.components?.default
    // The views are component objects; a function is a lazy route's import, whose module the
    // browser keeps for the router's own call.
    if (typeof component === 'function') {
      void (component as () => Promise<unknown>)().catch(() => undefined)
    }
  }
  const prefetch = to.meta.prefetch as ((to: RouteLocationNormalized) => void) | undefined
  prefetch?.(to)
}

router.beforeEach(async (to) => {
  const session = useSessionStore()
  if (session.status === 'unknown' || session.status === 'checking') {
    if (!to.meta.public) preload(to)
    await session.check()
  }
  if (to.meta.public) {
    if (to.name === 'login' && session.authenticated) {
      const redirect = typeof to.query.redirect === 'string' ? to.query.redirect : '/'
      return redirect.startsWith('/') && !redirect.startsWith('//') ? redirect : '/'
    }
    return true
  }
  if (!session.authenticated) {
    return { name: 'login', query: to.fullPath === '/' ? {} : { redirect: to.fullPath } }
  }
  return true
})

router.afterEach((to) => {
  document.title = to.meta.title ? `${String(to.meta.title)} · microdash` : 'microdash'
})
