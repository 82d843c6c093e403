/** Saved dashboards and the one being edited. Edits stay local until `save()`. */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api } from '@/api/client'
import type { Dashboard, Panel } from '@/api/types'
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
  const dirty = ref(false)
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
    current.value = found ? clone({ ...found, panels: found.panels ?? [] }) : null
    dirty.value = false
    saveError.value = null
    return !!found
  }

  /** Create an empty dashboard on the server and return its name. */
  async function create(title: string, name = slugify(title)): Promise<string> {
    if (names.value.has(name)) throw new Error(`A dashboard named "${name}" already exists`)
    const d: Dashboard = { name, title: title.trim() || name, panels: [] }
    await api.saveDashboard(d)
    list.value = [...list.value, d]
    return name
  }

  function edit(change: (d: Dashboard) => void): void {
    if (!current.value) return
    change(current.value)
    dirty.value = true
  }

  function addPanel(panel: NewPanel): string {
    const id = panel.id ?? uuid()
    edit((d) => d.panels.push({ ...clone(panel), id }))
    return id
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
      dirty.value = false
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
    if (current.value?.name === name) {
      current.value = null
      dirty.value = false
    }
  }

  return {
    list,
    loading,
    loaded,
    error,
    current,
    dirty,
    saving,
    saveError,
    fetchAll,
    open,
    create,
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
