-- Alert groups (issue 23): a channel with `groupBy` sends one notification per group of alerts
-- (the alerts sharing the values of those labels), as Alertmanager does. A row is what the
-- group's last notification said: which instances it listed as firing and as resolved, when,
-- and how many the group has had (`seq`, part of the idempotency key). It is written in the same
-- transaction as that notification, so after a crash or a takeover the engine knows exactly what
-- the receiver was told. `group_hash` is the hash of `labels` (the group's label values).
CREATE TABLE alert_groups (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    channel    TEXT    NOT NULL,
    group_hash TEXT    NOT NULL,
    labels     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    flushed_at INTEGER NOT NULL,
    firing     TEXT    NOT NULL,
    resolved   TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, channel, group_hash)
) WITHOUT ROWID;
