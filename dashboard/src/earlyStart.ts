/**
 * Built on its own into the classic script index.html runs first (scripts/routePreload.ts): it
 * starts the first page's session check and, on the explorer, its first query, and leaves the
 * responses to the app (lib/started.ts). A classic script in the head runs as soon as it
 * arrives; the entry's modules run only once the document is parsed and its styles are in.
 */
import { earlyUrls } from '@/lib/early'
import { startRequests } from '@/lib/started'

const at = Date.now()
startRequests(earlyUrls(window.location, at), at)
