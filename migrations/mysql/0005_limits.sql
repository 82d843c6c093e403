-- Per-tenant intake limits (PUT /api/v1/tenants/{name}/limits); NULL = the server's default
-- (`tenant_rate_limit` for the rate, no cap for series).
ALTER TABLE tenants ADD COLUMN limit_samples_per_second BIGINT;
ALTER TABLE tenants ADD COLUMN limit_series BIGINT;
