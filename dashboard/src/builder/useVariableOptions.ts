/** The values each dashboard variable offers: from a metric's series, a fixed list, or the label's values. */
import { ref, watch } from 'vue'
import { api } from '@/api/client'
import type { DashboardVariable } from '@/api/types'
import { errorText } from '@/lib/format'

export function useVariableOptions(vars: () => DashboardVariable[]) {
  const options = ref<Record<string, string[]>>({})
  const errors = ref<Record<string, string>>({})
  const loading = ref(false)
  let seq = 0

  async function valuesOf(v: DashboardVariable): Promise<string[]> {
    if (v.values?.length) return v.values
    const key = v.key || v.name
    if (v.metric) {
      const res = await api.series(v.metric)
      return [...new Set(res.series.map((s) => s.labels[key]).filter((x): x is string => !!x))].sort()
    }
    return [...(await api.labelValues(key))].sort()
  }

  watch(
    () => JSON.stringify(vars()),
    async () => {
      const mine = ++seq
      loading.value = true
      const nextOptions: Record<string, string[]> = {}
      const nextErrors: Record<string, string> = {}
      await Promise.all(
        vars().map(async (v) => {
          try {
            nextOptions[v.name] = await valuesOf(v)
          } catch (e) {
            nextErrors[v.name] = errorText(e)
            nextOptions[v.name] = []
          }
        }),
      )
      if (mine !== seq) return
      options.value = nextOptions
      errors.value = nextErrors
      loading.value = false
    },
    { immediate: true },
  )
  return { options, errors, loading }
}
