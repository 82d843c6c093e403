-- Alerting (MariaDB/MySQL): rules and channels, rule instances and their transitions, and the
-- notification outbox with every delivery attempt. Timestamps are Unix milliseconds.

-- A spec is the JSON of AlertRuleSpec / NotificationChannelSpec without `tenant`.
CREATE TABLE alert_rules (
    tenant_id BIGINT NOT NULL,
    name       VARCHAR(63) NOT NULL,
    spec       MEDIUMTEXT  NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name),
    FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE notification_channels (
    tenant_id BIGINT NOT NULL,
    name       VARCHAR(63) NOT NULL,
    spec       MEDIUMTEXT  NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name),
    FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per rule × matched series. `labels` is the series' canonical label JSON and
-- `labels_hash` its SHA-256 prefix (hex), so the unique key stays short on every backend.
-- `seq` counts the instance's transitions: with the id it makes idempotency keys.
CREATE TABLE alert_instances (
    id            BIGINT AUTO_INCREMENT PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    rule          VARCHAR(63) NOT NULL,
    labels        TEXT    NOT NULL,
    labels_hash   CHAR(32)    NOT NULL,
    state         VARCHAR(16) NOT NULL,
    since         BIGINT NOT NULL,
    pending_since BIGINT,
    clear_since   BIGINT,
    active_since  BIGINT,
    value         DOUBLE,
    last_seen     BIGINT,
    seq           BIGINT NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, rule, labels_hash),
    FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The history of transitions; kept when a rule is deleted.
CREATE TABLE alert_transitions (
    id          BIGINT AUTO_INCREMENT PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    instance_id BIGINT NOT NULL,
    rule        VARCHAR(63) NOT NULL,
    labels      TEXT    NOT NULL,
    from_state  VARCHAR(16) NOT NULL,
    to_state    VARCHAR(16) NOT NULL,
    value       DOUBLE,
    at          BIGINT NOT NULL,
    FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX alert_transitions_tenant_at ON alert_transitions(tenant_id, at);

-- The outbox: one row per (transition, channel), written in the transaction of the
-- transition. `status` is pending, delivered or failed; a pending row is due at
-- `next_attempt_at`, and claiming it moves that forward (a lease), so only one process
-- sends each attempt. `idempotency_key` is sent with every attempt.
CREATE TABLE notifications (
    id              BIGINT AUTO_INCREMENT PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    channel         VARCHAR(63) NOT NULL,
    instance_id     BIGINT,
    rule            VARCHAR(63),
    state           VARCHAR(16) NOT NULL,
    idempotency_key VARCHAR(200) NOT NULL UNIQUE,
    payload         MEDIUMTEXT  NOT NULL,
    status          VARCHAR(16) NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT,
    last_error      TEXT,
    FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX notifications_due ON notifications(status, next_attempt_at);
CREATE INDEX notifications_channel ON notifications(tenant_id, channel, id);
CREATE INDEX notifications_instance ON notifications(instance_id, channel);

CREATE TABLE delivery_attempts (
    id              BIGINT AUTO_INCREMENT PRIMARY KEY,
    notification_id BIGINT NOT NULL,
    at              BIGINT NOT NULL,
    ok              BOOLEAN NOT NULL,
    status_code     BIGINT,
    error           TEXT,
    duration_ms     BIGINT NOT NULL,
    FOREIGN KEY (notification_id) REFERENCES notifications(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX delivery_attempts_notification ON delivery_attempts(notification_id);

-- Distributed mode: the one worker that evaluates a rule holds its lease until
-- `expires_at` and renews it; another worker takes over an expired lease.
CREATE TABLE alert_leases (
    tenant_id  BIGINT NOT NULL,
    rule       VARCHAR(63) NOT NULL,
    owner      VARCHAR(200) NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, rule)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
