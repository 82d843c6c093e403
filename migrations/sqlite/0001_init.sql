-- microdash schema v1 (SQLite). Timestamps are Unix milliseconds.
CREATE TABLE tenants (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    display_name TEXT,
    created_at   INTEGER NOT NULL
);

-- Only a SHA-256 of each token is kept; `prefix` lets a person tell tokens apart.
CREATE TABLE tokens (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    hash        BLOB    NOT NULL UNIQUE,
    prefix      TEXT    NOT NULL,
    scopes      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX tokens_tenant ON tokens(tenant_id);

-- One row per (tenant, metric, label set); `labels` is canonical JSON with sorted keys.
CREATE TABLE series (
    id         INTEGER PRIMARY KEY,
    tenant_id  INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    metric     TEXT    NOT NULL,
    labels     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (tenant_id, metric, labels)
);

-- Raw samples; the primary key makes "last write wins" for a repeated (series, ts).
CREATE TABLE samples (
    series_id INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    value     REAL    NOT NULL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;

-- dedupe_id idempotency: a row per id seen within the window.
CREATE TABLE dedupe (
    tenant_id INTEGER NOT NULL,
    dedupe_id TEXT    NOT NULL,
    seen_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, dedupe_id)
) WITHOUT ROWID;
CREATE INDEX dedupe_seen_at ON dedupe(seen_at);

-- Dashboard sessions: a random id whose hash is stored, tied to the token that logged in.
CREATE TABLE sessions (
    hash       BLOB    PRIMARY KEY,
    token_id   INTEGER NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Saved dashboards, a JSON document per (tenant, name).
CREATE TABLE dashboards (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
) WITHOUT ROWID;
