/** Who is logged in: the cookie session of `/api/v1/session`. */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api } from '@/api/client'
import type { Session } from '@/api/types'
import { takeEarlySession } from '@/lib/early'
import { errorText } from '@/lib/format'

export type SessionStatus = 'unknown' | 'checking' | 'authenticated' | 'anonymous'

export const useSessionStore = defineStore('session', () => {
  const status = ref<SessionStatus>('unknown')
  const session = ref<Session | null>(null)
  /** Why the session could not be checked (server unreachable), shown on the login page. */
  const checkError = ref<string | null>(null)
  let pendingCheck: Promise<void> | null = null

  const authenticated = computed(() => status.value === 'authenticated')
  const tenant = computed(() => session.value?.tenant ?? '')
  const scopes = computed(() => session.value?.scopes ?? [])

  function set(s: Session | null): void {
    session.value = s
    status.value = s ? 'authenticated' : 'anonymous'
  }

  /** Ask the server once whether the cookie is still good; concurrent callers share the call. */
  function check(): Promise<void> {
    if (pendingCheck) return pendingCheck
    status.value = 'checking'
    checkError.value = null
    // The first check was started before the app was (src/boot.ts).
    pendingCheck = (takeEarlySession() ?? api.getSession())
      .then(set)
      .catch((e: unknown) => {
        checkError.value = errorText(e)
        set(null)
      })
      .finally(() => {
        pendingCheck = null
      })
    return pendingCheck
  }

  /** Throws the server's `ApiError` (e.g. 401 "Invalid token") for the form to show. */
  async function login(token: string): Promise<void> {
    set(await api.login(token.trim()))
    checkError.value = null
  }

  async function logout(): Promise<void> {
    try {
      await api.logout()
    } finally {
      set(null)
    }
  }

  /** The session lapsed elsewhere (a 401 from another call). */
  function expire(): void {
    set(null)
  }

  return { status, session, checkError, authenticated, tenant, scopes, check, login, logout, expire }
})
