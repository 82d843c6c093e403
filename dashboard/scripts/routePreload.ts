/**
 * Vite plugin: the page's own code starts downloading with the entry, not after it.
 *
 * Every page but the login is a lazy chunk (src/router.ts) that the router asks for once the
 * entry has been evaluated: on a cold load that is a second round of requests, ~50–100 ms after
 * the first. This plugin writes a small classic script (`assets/preload-[hash].js`, loaded from
 * index.html's head, so the CSP's `script-src 'self'` allows it) with, for each lazy route of
 * router.ts, the path pattern and the files that route needs besides the entry (its chunk, the
 * chunks that imports, their CSS). The script adds `<link rel="modulepreload">` (and the CSS) for
 * the route of `location.pathname` only; the router's later `import()` finds the modules in the
 * browser's module map.
 *
 * It also marks the code of the first chart (the entry, and the chunks of the routes in
 * `eagerViews`, i.e. the explorer's chart and uPlot) with V8's explicit compile hint
 * `//# allFunctionsCalledOnLoad`: Chromium then compiles all their functions while the file
 * streams in, off the main thread, instead of each one on its first call on the main thread
 * (nearly all of them are called before the first chart is painted). The hint is added after
 * the file names are hashed (minifying would drop an earlier comment), so it does not change
 * them: a file cached from a build without it differs by that comment only.
 *
 * With `early` (src/earlyStart.ts), the script also starts the first page's requests: that
 * module, bundled on its own (esbuild, as a classic script), follows the preloading code. The
 * session check and the explorer's first query then start as soon as the head is read, not once
 * the entry's modules are evaluated (module scripts wait for the document and its styles).
 */
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { Plugin as EsbuildPlugin } from 'esbuild'
import type { Plugin } from 'vite'
import type { OutputBundle, OutputChunk } from 'rollup'

export interface LazyRoute {
  /** vue-router path, e.g. `/dashboards/:name` */
  path: string
  /** the view's path under src/, e.g. `views/ExplorerView.vue` */
  view: string
}

/** The lazy routes of router.ts's source: `path: '…'` followed by `component: () => import('@/…')`. */
export function lazyRoutes(source: string): LazyRoute[] {
  const routes: LazyRoute[] = []
  const re = /path:\s*'([^']+)'[^{}]*?component:\s*\(\)\s*=>\s*import\('@\/([^']+)'\)/g
  for (let m = re.exec(source); m; m = re.exec(source)) routes.push({ path: m[1]!, view: m[2]! })
  const imports = source.match(/import\('@\//g)?.length ?? 0
  if (imports !== routes.length) {
    throw new Error(
      `routePreload: router.ts has ${imports} lazy imports but ${routes.length} were read as ` +
        "`path: '…', … component: () => import('@/…')`; keep each lazy route in that form",
    )
  }
  return routes
}

/**
 * A RegExp source matching the paths of a vue-router path (params match one segment, a trailing
 * slash is allowed), or null for a path with a custom pattern (the catch-all), not preloaded.
 */
export function pathPattern(path: string): string | null {
  if (path.includes('(')) return null
  const body = path
    .split('/')
    .map((part) => (part.startsWith(':') ? '[^/]+' : part.replace(/[.*+?^${}|[\]\\]/g, '\\$&')))
    .join('\\/')
  return path === '/' ? '^\\/$' : `^${body}\\/?$`
}

/** The files a chunk needs besides those `loaded` already: the chunk, what it imports, their CSS. */
function filesOf(chunk: OutputChunk, bundle: OutputBundle, loaded: Set<string>): { js: string[]; css: string[] } {
  const js: string[] = []
  const css: string[] = []
  const seen = new Set<string>()
  const visit = (c: OutputChunk): void => {
    if (seen.has(c.fileName) || loaded.has(c.fileName)) return
    seen.add(c.fileName)
    js.push(c.fileName)
    for (const f of c.viteMetadata?.importedCss ?? []) if (!css.includes(f)) css.push(f)
    for (const i of c.imports) {
      const next = bundle[i]
      if (next?.type === 'chunk') visit(next)
    }
  }
  visit(chunk)
  return { js, css }
}

/**
 * `entry` (a module whose imports of `@/…` are under `src`) bundled into one classic script:
 * the same modules the app uses, so what it computes matches what they do.
 */
export async function classicScript(entry: string, src: string): Promise<string> {
  const alias: EsbuildPlugin = {
    name: 'at-is-src',
    setup(build) {
      build.onResolve({ filter: /^@\// }, (args) => {
        const base = join(src, args.path.slice(2))
        const path = [base, `${base}.ts`, join(base, 'index.ts')].find((p) => existsSync(p) && !p.endsWith('/'))
        if (!path) throw new Error(`routePreload: cannot resolve ${args.path} from ${args.importer}`)
        return { path }
      })
    },
  }
  // Loaded here: the plugin's unit tests run in jsdom, where esbuild refuses to load.
  const { build } = await import('esbuild')
  const out = await build({
    entryPoints: [entry],
    bundle: true,
    format: 'iife',
    minify: true,
    target: 'es2020',
    write: false,
    logLevel: 'silent',
    plugins: [alias],
  })
  return out.outputFiles[0]!.text
}

/** The script's text: the table, and the code that preloads the current path's entry. */
export function preloadScript(base: string, table: [string, string[], string[]][], early = ''): string {
  return `// Preload the current page's code (made by scripts/routePreload.ts at build time).
(function () {
  var routes = ${JSON.stringify(table)};
  var path = location.pathname;
  for (var i = 0; i < routes.length; i++) {
    if (!new RegExp(routes[i][0]).test(path)) continue;
    var add = function (rel, file) {
      var link = document.createElement('link');
      link.rel = rel;
      link.href = ${JSON.stringify(base)} + file;
      link.crossOrigin = '';
      document.head.appendChild(link);
    };
    routes[i][1].forEach(function (f) { add('modulepreload', f) });
    routes[i][2].forEach(function (f) { add('stylesheet', f) });
    return;
  }
})();
${early}`
}

/** V8's explicit compile hint (Chromium 136+; other engines read a comment). */
export const EAGER_COMPILE_HINT = '//# allFunctionsCalledOnLoad\n'

/**
 * `routerFile`: src/router.ts. `eagerViews`: views (paths under src/) whose code, with the
 * entry's, gets the compile hint. `early`: a module (src/earlyStart.ts) the script runs after
 * the preloading.
 */
export function routePreload(routerFile: string, eagerViews: string[] = [], early?: string): Plugin[] {
  let base = '/'
  let fileName: string | null = null
  const preload: Plugin = {
    name: 'microdash:route-preload',
    apply: 'build',
    configResolved(config) {
      base = config.base
    },
    async generateBundle(_options, bundle) {
      const routes = lazyRoutes(readFileSync(routerFile, 'utf8'))
      const chunks = Object.values(bundle).filter((o): o is OutputChunk => o.type === 'chunk')
      const loaded = new Set<string>()
      for (const entry of chunks.filter((c) => c.isEntry)) {
        for (const f of filesOf(entry, bundle, new Set()).js) loaded.add(f)
      }
      const table: [string, string[], string[]][] = []
      for (const route of routes) {
        const pattern = pathPattern(route.path)
        if (!pattern) continue
        const chunk = chunks.find((c) => c.facadeModuleId?.endsWith(`/src/${route.view}`))
        if (!chunk) throw new Error(`routePreload: no chunk for ${route.view} (route ${route.path})`)
        const { js, css } = filesOf(chunk, bundle, loaded)
        table.push([pattern, js, css])
      }
      const source = preloadScript(base, table, early ? await classicScript(early, dirname(routerFile)) : '')
      const hash = createHash('sha256').update(source).digest('hex').slice(0, 8)
      fileName = `assets/preload-${hash}.js`
      this.emitFile({ type: 'asset', fileName, source })
    },
    transformIndexHtml: {
      order: 'post',
      handler() {
        if (!fileName) return []
        return [{ tag: 'script', attrs: { src: `${base}${fileName}` }, injectTo: 'head-prepend' }]
      },
    },
  }
  // After Vite's own generateBundle work (which rewrites the entry's first line).
  const hints: Plugin = {
    name: 'microdash:compile-hints',
    apply: 'build',
    generateBundle: {
      order: 'post',
      handler(_options, bundle) {
        const chunks = Object.values(bundle).filter((o): o is OutputChunk => o.type === 'chunk')
        const loaded = new Set<string>()
        for (const entry of chunks.filter((c) => c.isEntry)) {
          for (const f of filesOf(entry, bundle, new Set()).js) loaded.add(f)
        }
        const eager = new Set(loaded)
        for (const view of eagerViews) {
          const chunk = chunks.find((c) => c.facadeModuleId?.endsWith(`/src/${view}`))
          if (!chunk) throw new Error(`routePreload: no chunk for ${view} (eagerViews)`)
          for (const f of filesOf(chunk, bundle, loaded).js) eager.add(f)
        }
        for (const f of eager) {
          const chunk = bundle[f] as OutputChunk
          if (!chunk.code.startsWith(EAGER_COMPILE_HINT)) chunk.code = EAGER_COMPILE_HINT + chunk.code
        }
      },
    },
  }
  return [preload, hints]
}
