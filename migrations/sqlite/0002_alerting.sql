-- Alerting (SQLite): rules and channels, rule instances and their transitions, and the
-- notification outbox with every delivery attempt. Timestamps are Unix milliseconds.

-- A spec is the JSON of AlertRuleSpec / NotificationChannelSpec without `tenant`.
CREATE TABLE alert_rules (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    spec       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE notification_channels (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    spec       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- One row per rule × matched series. `labels` is the series' canonical label JSON and
-- `labels_hash` its SHA-256 prefix (hex), so the unique key stays short on every backend.
-- `seq` counts the instance's transitions: with the id it makes idempotency keys.
CREATE TABLE alert_instances (
    id            INTEGER PRIMARY KEY,
    tenant_id     INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    rule          TEXT    NOT NULL,
    labels        TEXT    NOT NULL,
    labels_hash   TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    since         INTEGER NOT NULL,
    pending_since INTEGER,
    clear_since   INTEGER,
    active_since  INTEGER,
    value         REAL,
    last_seen     INTEGER,
    seq           INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, rule, labels_hash)
);

-- The history of transitions; kept when a rule is deleted.
CREATE TABLE alert_transitions (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    instance_id INTEGER NOT NULL,
    rule        TEXT    NOT NULL,
    labels      TEXT    NOT NULL,
    from_state  TEXT    NOT NULL,
    to_state    TEXT    NOT NULL,
    value       REAL,
    at          INTEGER NOT NULL
);
CREATE INDEX alert_transitions_tenant_at ON alert_transitions(tenant_id, at);

-- The outbox: one row per (transition, channel), written in the transaction of the
-- transition. `status` is pending, delivered or failed; a pending row is due at
-- `next_attempt_at`, and claiming it moves that forward (a lease), so only one process
-- sends each attempt. `idempotency_key` is sent with every attempt.
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY,
    tenant_id       INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    channel         TEXT    NOT NULL,
    instance_id     INTEGER,
    rule            TEXT,
    state           TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    last_error      TEXT
);
CREATE INDEX notifications_due ON notifications(status, next_attempt_at);
CREATE INDEX notifications_channel ON notifications(tenant_id, channel, id);
CREATE INDEX notifications_instance ON notifications(instance_id, channel);

CREATE TABLE delivery_attempts (
    id              INTEGER PRIMARY KEY,
    notification_id INTEGER NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
    at              INTEGER NOT NULL,
    ok              INTEGER NOT NULL,
    status_code     INTEGER,
    error           TEXT,
    duration_ms     INTEGER NOT NULL
);
CREATE INDEX delivery_attempts_notification ON delivery_attempts(notification_id);

-- Distributed mode: the one worker that evaluates a rule holds its lease until
-- `expires_at` and renews it; another worker takes over an expired lease.
CREATE TABLE alert_leases (
    tenant_id  INTEGER NOT NULL,
    rule       TEXT    NOT NULL,
    owner      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, rule)
);
