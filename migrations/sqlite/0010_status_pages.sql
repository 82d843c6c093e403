-- Public status pages (issue 20, item 2; docs/status-pages.md). The slug is the page's public
-- address (`/status/{slug}`), which names no tenant: unique across tenants. `components` is the
-- JSON array the API took (`[{"name": …, "rule": …}]`).
CREATE TABLE status_pages (
    slug       TEXT    NOT NULL PRIMARY KEY,
    tenant_id  INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    title      TEXT    NOT NULL,
    components TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX status_pages_tenant ON status_pages (tenant_id);
