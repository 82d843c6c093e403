-- Silences (issue 23): a tenant's maintenance windows. While `starts_at <= now < ends_at`, no
-- notification is sent for an alert instance whose labels (the series' labels, the rule's
-- labels and `alertname`, the rule's name) equal every matcher; its transitions are still
-- recorded. Expiring a silence moves `ends_at` to that moment. `id` is random (it counts
-- nothing of other tenants).
CREATE TABLE silences (
    tenant_id  BIGINT       NOT NULL,
    id         VARCHAR(32)  NOT NULL,
    matchers   MEDIUMTEXT   NOT NULL,
    starts_at  BIGINT       NOT NULL,
    ends_at    BIGINT       NOT NULL,
    comment    TEXT         NOT NULL,
    created_by VARCHAR(255) NOT NULL,
    created_at BIGINT       NOT NULL,
    updated_at BIGINT       NOT NULL,
    PRIMARY KEY (tenant_id, id),
    INDEX silences_by_end (ends_at),
    FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
