-- Tenancy over time (SQLite). A deleted tenant is first marked (`deleted_at`, its name freed
-- as `~<id>`), which hides it at once; its rows are then removed in bounded chunks and the
-- tenant row last. Tenant, token and series ids are never reused: the tables are rebuilt
-- with AUTOINCREMENT right after this migration, by `SqliteStore::migrate` (the rebuild needs
-- `PRAGMA foreign_keys = OFF`, which SQLite ignores inside the transaction a migration runs in).
ALTER TABLE tenants ADD COLUMN deleted_at INTEGER;

-- Tokens may expire; `last_used_at` is kept to within a few seconds.
ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE tokens ADD COLUMN last_used_at INTEGER;

-- Revoked tokens and deleted tenants, in order: every server process polls this each
-- second, so a deletion made by another process (the CLI, another API replica) closes
-- caches, streams and MQTT sessions there too. Old rows are pruned.
CREATE TABLE auth_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id INTEGER NOT NULL,
    token_id  INTEGER,
    at        INTEGER NOT NULL
);
