-- Tokens are numbered per tenant (1, 2, 3, … for each tenant) and a number is never given
-- twice, even after its token is revoked: the number is the `id` that the token APIs, the CLI
-- and the dashboard show and revoke by, so a tenant learns nothing of other tenants' tokens
-- from it. `tenants.token_seq` is the last number handed out. Existing tokens are numbered in
-- their order (their old ids were global).
ALTER TABLE tenants ADD COLUMN token_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN tenant_seq INTEGER;
UPDATE tokens SET tenant_seq = (
    SELECT COUNT(*) FROM tokens t2 WHERE t2.tenant_id = tokens.tenant_id AND t2.id <= tokens.id
);
UPDATE tenants SET token_seq = COALESCE((SELECT MAX(tenant_seq) FROM tokens WHERE tokens.tenant_id = tenants.id), 0);
CREATE UNIQUE INDEX tokens_tenant_seq ON tokens(tenant_id, tenant_seq);
