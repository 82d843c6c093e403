-- Alert groups (issue 23): a channel with `groupBy` sends one notification per group of alerts
-- (the alerts sharing the values of those labels), as Alertmanager does. A row is what the
-- group's last notification said: which instances it listed as firing and as resolved, when,
-- and how many the group has had (`seq`, part of the idempotency key). It is written in the same
-- transaction as that notification, so after a crash or a takeover the engine knows exactly what
-- the receiver was told. `group_hash` is the hash of `labels` (the group's label values).
CREATE TABLE alert_groups (
    tenant_id  BIGINT       NOT NULL,
    channel    VARCHAR(253) NOT NULL,
    group_hash VARCHAR(64)  NOT NULL,
    labels     MEDIUMTEXT   NOT NULL,
    seq        BIGINT       NOT NULL,
    flushed_at BIGINT       NOT NULL,
    firing     MEDIUMTEXT   NOT NULL,
    resolved   MEDIUMTEXT   NOT NULL,
    PRIMARY KEY (tenant_id, channel, group_hash),
    FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
