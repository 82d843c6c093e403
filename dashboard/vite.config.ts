import { fileURLToPath, URL } from 'node:url'
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'
import tailwindcss from '@tailwindcss/vite'
import { routePreload } from './scripts/routePreload'
import { uplotLazyIntl } from './scripts/uplotLazyIntl'

// The server to proxy API calls to during `npm run dev`.
const apiTarget = process.env.MICRODASH_DEV_API ?? 'http://127.0.0.1:8080'

export default defineConfig({
  // Served by microdash at `/` with an index.html fallback for history-mode routes.
  base: '/',
  plugins: [
    vue(),
    tailwindcss(),
    // uPlot's Intl formatters are made on first use, not on the first chart's path
    // (scripts/uplotLazyIntl.ts).
    uplotLazyIntl(),
    // index.html fetches the current route's chunks with the entry and starts the first page's
    // requests (src/earlyStart.ts); the first chart's code is compiled while it streams in
    // (scripts/routePreload.ts).
    routePreload(
      fileURLToPath(new URL('./src/router.ts', import.meta.url)),
      ['views/ExplorerView.vue'],
      fileURLToPath(new URL('./src/earlyStart.ts', import.meta.url)),
    ),
  ],
  // No component here uses Vue's Options API (all are <script setup>, so are the libraries'):
  // without it Vue's runtime in the entry is ~10 KB smaller and quicker to evaluate.
  define: { __VUE_OPTIONS_API__: 'false' },
  resolve: {
    alias: { '@': fileURLToPath(new URL('./src', import.meta.url)) },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    // uPlot is the only large dependency; keep it in its own cacheable chunk.
    rollupOptions: {
      output: {
        manualChunks: { uplot: ['uplot'] },
        chunkFileNames: (chunk) => `assets/${chunk.name.replace(/\.vue_vue_type.*$/, '')}-[hash].js`,
      },
    },
  },
  server: {
    proxy: {
      // SSE (/api/v1/stream) passes through the proxy unbuffered.
      '/api': { target: apiTarget },
      '/healthz': { target: apiTarget },
    },
  },
})
