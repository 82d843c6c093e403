/**
 * Where the things under test live, and a loud check that they exist.
 *
 * Override with MICRODASH_BIN (the `microdash` binary), MICRODASH_DASHBOARD_DIST (a built
 * dashboard folder holding index.html) and CHROMIUM_PATH (the browser).
 */
import fs from 'node:fs'
import path from 'node:path'

export const E2E_DIR = path.resolve(__dirname, '..')
export const REPO_ROOT = path.resolve(E2E_DIR, '..', '..')

export const SERVER_BIN = process.env.MICRODASH_BIN || path.join(REPO_ROOT, 'target', 'debug', 'microdash')
export const DASHBOARD_DIST = process.env.MICRODASH_DASHBOARD_DIST || path.join(REPO_ROOT, 'dashboard', 'dist')
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium'
export const SCREENSHOT_DIR = process.env.MICRODASH_SCREENSHOT_DIR || path.join(REPO_ROOT, 'docs', 'screenshots')

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
]

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return fs.statSync(file).isFile()
  } catch {
    return false
  }
}

/** Against the Compose stack (E2E_STACK_URL) the server and dashboard are the containers'. */
const AGAINST_STACK = !!process.env.E2E_STACK_URL

/** Every missing prerequisite, each with the command that provides it. Empty = ready. */
export function missingPrerequisites(): string[] {
  const problems: string[] = []
  if (!AGAINST_STACK && !isExecutable(SERVER_BIN)) {
    problems.push(
      `The microdash server binary is missing: ${SERVER_BIN}\n` +
        `    Build it with:  cd ${REPO_ROOT} && cargo build -p microdash\n` +
        `    (or point MICRODASH_BIN at another build)`,
    )
  }
  if (!AGAINST_STACK && !fs.existsSync(path.join(DASHBOARD_DIST, 'index.html'))) {
    problems.push(
      `The dashboard build is missing: ${path.join(DASHBOARD_DIST, 'index.html')}\n` +
        `    Build it with:  cd ${path.join(REPO_ROOT, 'dashboard')} && npm ci && npm run build\n` +
        `    (or point MICRODASH_DASHBOARD_DIST at another build)`,
    )
  }
  if (!isExecutable(CHROMIUM_PATH)) {
    problems.push(
      `Chromium is missing: ${CHROMIUM_PATH}\n` +
        `    Install Debian's build with:  apt-get update && apt-get install -y chromium\n` +
        `    (or point CHROMIUM_PATH at another Chromium; \`npx playwright install\` is not used here)`,
    )
  }
  return problems
}

/** Newest modification time (ms) of any file under `dir` whose name matches `filter`. */
function newestMtime(dir: string, filter: (name: string) => boolean): number {
  let newest = 0
  const walk = (d: string) => {
    let entries: fs.Dirent[]
    try {
      entries = fs.readdirSync(d, { withFileTypes: true })
    } catch {
      return
    }
    for (const e of entries) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) {
        if (!['node_modules', 'target', 'dist', 'tests', 'test'].includes(e.name)) walk(p)
      } else if (filter(e.name) && e.name !== 'tests.rs') {
        newest = Math.max(newest, fs.statSync(p).mtimeMs)
      }
    }
  }
  walk(dir)
  return newest
}

/** Warnings (not failures) when a build looks older than its sources. */
export function staleBuildWarnings(): string[] {
  const warnings: string[] = []
  if (AGAINST_STACK) return warnings
  try {
    const bin = fs.statSync(SERVER_BIN).mtimeMs
    const src = Math.max(
      newestMtime(path.join(REPO_ROOT, 'apiserver', 'src'), (n) => n.endsWith('.rs')),
      newestMtime(path.join(REPO_ROOT, 'model', 'src'), (n) => n.endsWith('.rs')),
      newestMtime(path.join(REPO_ROOT, 'migrations'), (n) => n.endsWith('.sql')),
    )
    if (src > bin) warnings.push(`${SERVER_BIN} is older than its sources: run \`cargo build -p microdash\``)
  } catch {
    // Missing files are reported by missingPrerequisites().
  }
  try {
    const built = fs.statSync(path.join(DASHBOARD_DIST, 'index.html')).mtimeMs
    const src = newestMtime(path.join(REPO_ROOT, 'dashboard', 'src'), (n) => !n.endsWith('.spec.ts'))
    if (src > built) warnings.push(`${DASHBOARD_DIST} is older than dashboard/src: run \`npm run build\` in dashboard/`)
  } catch {
    // idem
  }
  return warnings
}
