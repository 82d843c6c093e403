-- Rule and channel names are Kubernetes object names (DNS subdomains, up to 253 characters),
-- so the operator can name a rule NAMESPACE.NAME on the server and same-named AlertRules of two
-- namespaces stay two rules. PostgreSQL and SQLite keep these as TEXT already.
ALTER TABLE alert_rules MODIFY name VARCHAR(253) NOT NULL;
ALTER TABLE notification_channels MODIFY name VARCHAR(253) NOT NULL;
ALTER TABLE alert_instances MODIFY rule VARCHAR(253) NOT NULL;
ALTER TABLE alert_transitions MODIFY rule VARCHAR(253) NOT NULL;
ALTER TABLE notifications MODIFY channel VARCHAR(253) NOT NULL, MODIFY rule VARCHAR(253);
ALTER TABLE alert_leases MODIFY rule VARCHAR(253) NOT NULL;
