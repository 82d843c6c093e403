/**
 * Imported first by main.ts, for its effect: the entry evaluates this module (and the few it
 * imports, none of them Vue) before everything else, so the first page's requests start while
 * the rest of the entry is still being evaluated (lib/early.ts).
 */
import { startEarly } from '@/lib/early'

startEarly(window.location)
