import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import { useSessionStore } from '@/stores/session'
import OverviewView from '@/views/OverviewView.vue'
import LoginView from '@/views/LoginView.vue'

const routes: RouteRecordRaw[] = [
  { path: '/login', name: 'login', component: LoginView, meta: { public: true, title: 'Log in' } },
  { path: '/', name: 'overview', component: OverviewView, meta: { title: 'Overview' } },
  // Chart pages load uPlot; keep them out of the first download.
  { path: '/explorer', name: 'explorer', component: () => import('@/views/ExplorerView.vue'), meta: { title: 'Explorer' } },
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

router.beforeEach(async (to) => {
  const session = useSessionStore()
  if (session.status === 'unknown' || session.status === 'checking') await session.check()
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
