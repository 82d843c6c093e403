-- microdash schema v1 (PostgreSQL). Timestamps are Unix milliseconds.
CREATE TABLE tenants (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT   NOT NULL UNIQUE,
    display_name TEXT,
    created_at   BIGINT NOT NULL
);

CREATE TABLE tokens (
    id         BIGSERIAL PRIMARY KEY,
    tenant_id  BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    hash       BYTEA  NOT NULL UNIQUE,
    prefix     TEXT   NOT NULL,
    scopes     TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX tokens_tenant ON tokens(tenant_id);

CREATE TABLE series (
    id         BIGSERIAL PRIMARY KEY,
    tenant_id  BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    metric     TEXT   NOT NULL,
    labels     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, metric, labels)
);

CREATE TABLE samples (
    series_id BIGINT NOT NULL,
    ts        BIGINT NOT NULL,
    value     DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (series_id, ts)
);

CREATE TABLE dedupe (
    tenant_id BIGINT NOT NULL,
    dedupe_id TEXT   NOT NULL,
    seen_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, dedupe_id)
);
CREATE INDEX dedupe_seen_at ON dedupe(seen_at);

CREATE TABLE sessions (
    hash       BYTEA  PRIMARY KEY,
    token_id   BIGINT NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL
);

CREATE TABLE dashboards (
    tenant_id  BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
