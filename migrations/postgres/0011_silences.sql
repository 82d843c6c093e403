-- Silences (issue 23): a tenant's maintenance windows. While `starts_at <= now < ends_at`, no
-- notification is sent for an alert instance whose labels (the series' labels, the rule's
-- labels and `alertname`, the rule's name) equal every matcher; its transitions are still
-- recorded. Expiring a silence moves `ends_at` to that moment. `id` is random (it counts
-- nothing of other tenants).
CREATE TABLE silences (
    tenant_id  BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id         TEXT   NOT NULL,
    matchers   TEXT   NOT NULL,
    starts_at  BIGINT NOT NULL,
    ends_at    BIGINT NOT NULL,
    comment    TEXT   NOT NULL,
    created_by TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX silences_by_end ON silences (ends_at);
