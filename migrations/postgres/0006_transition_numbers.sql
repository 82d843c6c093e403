-- Alert transitions are numbered per tenant (1, 2, 3, … for each tenant): the number is the
-- `id` of /api/v1/alerts/history and of the alert stream, so a tenant learns nothing of other
-- tenants' transitions from it. Existing rows are numbered in their order.
ALTER TABLE alert_transitions ADD COLUMN tenant_seq BIGINT;
UPDATE alert_transitions SET tenant_seq = (
    SELECT COUNT(*) FROM alert_transitions t2
    WHERE t2.tenant_id = alert_transitions.tenant_id AND t2.id <= alert_transitions.id
);
CREATE UNIQUE INDEX alert_transitions_tenant_seq ON alert_transitions(tenant_id, tenant_seq);
