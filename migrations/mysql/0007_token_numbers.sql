-- Tokens are numbered per tenant (1, 2, 3, … for each tenant) and a number is never given
-- twice, even after its token is revoked: the number is the `id` that the token APIs, the CLI
-- and the dashboard show and revoke by, so a tenant learns nothing of other tenants' tokens
-- from it. `tenants.token_seq` is the last number handed out. Existing tokens are numbered in
-- their order (their old ids were global).
ALTER TABLE tenants ADD COLUMN token_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN tenant_seq BIGINT;
UPDATE tokens t
    JOIN (SELECT id, ROW_NUMBER() OVER (PARTITION BY tenant_id ORDER BY id) AS n FROM tokens) r
    ON r.id = t.id
    SET t.tenant_seq = r.n;
UPDATE tenants SET token_seq = COALESCE((SELECT MAX(tenant_seq) FROM tokens WHERE tokens.tenant_id = tenants.id), 0);
CREATE UNIQUE INDEX tokens_tenant_seq ON tokens(tenant_id, tenant_seq);
