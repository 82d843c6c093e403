/**
 * Runs once before any scenario: fail loudly (never skip) when the server binary, the
 * dashboard build or Chromium is missing, naming the command that provides it.
 */
import { missingPrerequisites, staleBuildWarnings } from './paths'

export default function globalSetup(): void {
  const missing = missingPrerequisites()
  if (missing.length > 0) {
    throw new Error(`microdash e2e tests cannot run:\n\n  - ${missing.join('\n  - ')}\n`)
  }
  for (const w of staleBuildWarnings()) console.warn(`warning: ${w}`)
}
