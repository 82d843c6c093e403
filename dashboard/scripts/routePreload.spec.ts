/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { lazyRoutes, pathPattern, preloadScript } from './routePreload'

const router = readFileSync(resolve(__dirname, '../src/router.ts'), 'utf8')

afterEach(() => {
  document.head.innerHTML = ''
  window.history.replaceState(null, '', '/')
})

describe('route preload', () => {
  it('reads every lazy route of router.ts', () => {
    const routes = lazyRoutes(router)
    expect(routes).toContainEqual({ path: '/explorer', view: 'views/ExplorerView.vue' })
    expect(routes).toContainEqual({ path: '/dashboards/:name', view: 'views/DashboardView.vue' })
    expect(routes.length).toBe(router.match(/import\('@\//g)!.length)
  })

  it('fails the build on a lazy route written in another form', () => {
    expect(() => lazyRoutes(`{ component: () => import('@/views/X.vue'), path: '/x' }`)).toThrow(/1 lazy imports but 0/)
  })

  it('matches paths like vue-router, and skips the catch-all', () => {
    const re = (p: string) => new RegExp(pathPattern(p)!)
    expect(re('/').test('/')).toBe(true)
    expect(re('/').test('/explorer')).toBe(false)
    expect(re('/explorer').test('/explorer/')).toBe(true)
    expect(re('/explorer').test('/explorerx')).toBe(false)
    expect(re('/dashboards/:name').test('/dashboards/web')).toBe(true)
    expect(re('/dashboards/:name').test('/dashboards/web/x')).toBe(false)
    expect(pathPattern('/:path(.*)*')).toBeNull()
  })

  it('preloads the current path’s files only', () => {
    const table: [string, string[], string[]][] = [
      [pathPattern('/')!, ['assets/Overview.js'], []],
      [pathPattern('/explorer')!, ['assets/Explorer.js', 'assets/uplot.js'], ['assets/chart.css']],
    ]
    window.history.replaceState(null, '', '/explorer?metric=cpu')
    new Function(preloadScript('/', table))()
    const links = [...document.head.querySelectorAll('link')].map((l) => [l.rel, l.getAttribute('href')])
    expect(links).toEqual([
      ['modulepreload', '/assets/Explorer.js'],
      ['modulepreload', '/assets/uplot.js'],
      ['stylesheet', '/assets/chart.css'],
    ])
  })
})
