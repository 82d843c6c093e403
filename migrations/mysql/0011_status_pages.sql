-- Public status pages (issue 20, item 2; docs/status-pages.md). The slug is the page's public
-- address (`/status/{slug}`), which names no tenant: unique across tenants. `components` is the
-- JSON array the API took (`[{"name": …, "rule": …}]`). Slugs are lowercase letters, digits and
-- `-` (checked by the API), so the table's collation serves them. Numbered 0011 here: this
-- directory's 0010 is the chunks migration (0009 on SQLite and PostgreSQL).
CREATE TABLE status_pages (
    slug       VARCHAR(63) NOT NULL PRIMARY KEY,
    tenant_id  BIGINT      NOT NULL,
    title      TEXT        NOT NULL,
    components MEDIUMTEXT  NOT NULL,
    created_at BIGINT      NOT NULL,
    updated_at BIGINT      NOT NULL,
    KEY status_pages_tenant (tenant_id),
    FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
