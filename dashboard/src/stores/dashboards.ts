/**
 * Saved dashboards and the one being edited. Edits stay local until `save()`; every edit can
 * be undone (a bounded history of the whole document), and `dirty` compares with the saved copy.
 */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api } from '@/api/client'
import type { Dashboard, DashboardVariable, GridPos, Panel } from '@/api/types'
import { DEFAULT_SIZE, UndoHistory, migrateDashboard, nextPosition, stableJson } from '@/builder/model'
import { uuid } from '@/lib/uuid'
import { errorText } from '@/lib/format'

export type NewPanel = Omit<Panel, 'id'> & { id?: string }

/** A dashboard name from a title. The server takes names matching `[a-zA-Z_][a-zA-Z0-9_.:-]*`. */
export function slugify(title: string): string {
  const slug = title
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 64)
  if (!slug) return `dashboard-${uuid().slice(0, 8)}`
  return /^[a-z]/.test(slug) ? slug : `d-${slug}`
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T
}

export const useDashboardsStore = defineStore('dashboards', () => {
  const list = ref<Dashboard[]>([])
  const loading = ref(false)
  const loaded = ref(false)
  const error = ref<string | null>(null)
  /** Working copy of the open dashboard. */
  const current = ref<Dashboard | null>(null)
  /** JSON of `current` as last opened or saved. */
  const savedJson = ref<string | null>(null)
  const dirty = computed(() => current.value !== null && stableJson(current.value) !== savedJson.value)
  const history = new UndoHistory(50)
  const undoDepth = ref(0)
  const canUndo = computed(() => undoDepth.value > 0)
  const saving = ref(false)
  const saveError = ref<string | null>(null)

  const names = computed(() => new Set(list.value.map((d) => d.name)))

  async function fetchAll(): Promise<void> {
    loading.value = true
    error.value = null
    try {
      list.value = await api.dashboards()
      loaded.value = true
    } catch (e) {
      error.value = errorText(e)
    } finally {
      loading.value = false
    }
  }

  /** Load `name` into `current`; false when no such dashboard exists. */
  async function open(name: string): Promise<boolean> {
    await fetchAll()
    const found = list.value.find((d) => d.name === name)
    load(found ? migrateDashboard(clone({ ...found, panels: found.panels ?? [] })) : null)
    return !!found
  }

  function load(d: Dashboard | null): void {
    current.value = d
    savedJson.value = d ? stableJson(d) : null
    history.clear()
    undoDepth.value = 0
    saveError.value = null
  }

  /** Back to the saved copy. */
  function discard(): void {
    if (!current.value || savedJson.value === null) return
    const d = JSON.parse(savedJson.value) as Dashboard
    load(d)
  }

  /** Create an empty dashboard on the server and return its name. */
  async function create(title: string, name = slugify(title)): Promise<string> {
    if (names.value.has(name)) throw new Error(`A dashboard named "${name}" already exists`)
    const d: Dashboard = { name, title: title.trim() || name, panels: [] }
    await api.saveDashboard(d)
    list.value = [...list.value, d]
    return name
  }

  /** Store `d` as it is under its name (import, templates), replacing any dashboard of that name. */
  async function put(d: Dashboard): Promise<void> {
    const doc = clone(d)
    await api.saveDashboard(doc)
    const i = list.value.findIndex((x) => x.name === doc.name)
    if (i >= 0) list.value[i] = doc
    else list.value = [...list.value, doc]
  }

  function edit(change: (d: Dashboard) => void): void {
    if (!current.value) return
    const before = clone(current.value)
    const next = clone(current.value)
    change(next)
    if (stableJson(next) === stableJson(before)) return
    history.push(before)
    undoDepth.value = history.size
    current.value = next
  }

  /** Back to the state before the last edit. */
  function undo(): void {
    const prev = history.pop<Dashboard>()
    undoDepth.value = history.size
    if (prev) current.value = prev
  }

  function addPanel(panel: NewPanel): string {
    const id = panel.id ?? uuid()
    edit((d) => {
      const type = panel.type ?? 'timeseries'
      const size = DEFAULT_SIZE[type]
      d.panels.push({ ...clone(panel), id, type, layout: panel.layout ?? nextPosition(d.panels, size.w, size.h) })
    })
    return id
  }

  /** New grid places of panels (after a drag or resize); unknown ids are ignored. */
  function setLayout(places: ReadonlyArray<GridPos & { i: string | number }>): void {
    edit((d) => {
      for (const pl of places) {
        const p = d.panels.find((x) => x.id === String(pl.i))
        if (p) p.layout = { x: pl.x, y: pl.y, w: pl.w, h: pl.h }
      }
    })
  }

  function setVariables(vars: DashboardVariable[]): void {
    edit((d) => {
      d.variables = clone(vars)
    })
  }

  function setRange(range: Dashboard['range']): void {
    edit((d) => {
      d.range = range ? clone(range) : undefined
      if (!d.range) delete d.range
    })
  }

  function updatePanel(panel: Panel): void {
    edit((d) => {
      const i = d.panels.findIndex((p) => p.id === panel.id)
      if (i >= 0) d.panels[i] = clone(panel)
    })
  }

  function removePanel(id: string): void {
    edit((d) => {
      d.panels = d.panels.filter((p) => p.id !== id)
    })
  }

  /** Move a panel to `index` (clamped). */
  function movePanelTo(id: string, index: number): void {
    edit((d) => {
      const from = d.panels.findIndex((p) => p.id === id)
      if (from < 0) return
      const to = Math.max(0, Math.min(d.panels.length - 1, index))
      if (to === from) return
      const [p] = d.panels.splice(from, 1)
      d.panels.splice(to, 0, p!)
    })
  }

  /** Move a panel by `delta` places (-1 up, +1 down). */
  function movePanel(id: string, delta: number): void {
    const from = current.value?.panels.findIndex((p) => p.id === id) ?? -1
    if (from >= 0) movePanelTo(id, from + delta)
  }

  function setTitle(title: string): void {
    edit((d) => {
      d.title = title
    })
  }

  async function save(): Promise<void> {
    if (!current.value) return
    saving.value = true
    saveError.value = null
    try {
      const d = clone(current.value)
      await api.saveDashboard(d)
      const i = list.value.findIndex((x) => x.name === d.name)
      if (i >= 0) list.value[i] = d
      else list.value.push(d)
      savedJson.value = stableJson(d)
    } catch (e) {
      saveError.value = errorText(e)
      throw e
    } finally {
      saving.value = false
    }
  }

  async function remove(name: string): Promise<void> {
    await api.deleteDashboard(name)
    list.value = list.value.filter((d) => d.name !== name)
    if (current.value?.name === name) load(null)
  }

  return {
    list,
    loading,
    loaded,
    error,
    current,
    dirty,
    canUndo,
    saving,
    saveError,
    fetchAll,
    open,
    discard,
    create,
    put,
    undo,
    setLayout,
    setVariables,
    setRange,
    addPanel,
    updatePanel,
    removePanel,
    movePanel,
    movePanelTo,
    setTitle,
    save,
    remove,
  }
})
