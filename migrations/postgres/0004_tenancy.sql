-- Tenancy over time (PostgreSQL). Ids come from sequences (BIGSERIAL), which never hand out a
-- value twice, so tenant, token and series ids are never reused. A deleted tenant is first
-- marked (`deleted_at`, its name freed as `~<id>`), which hides it at once; its rows are then
-- removed in bounded chunks and the tenant row last.
ALTER TABLE tenants ADD COLUMN deleted_at BIGINT;

-- Tokens may expire; `last_used_at` is kept to within a few seconds.
ALTER TABLE tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE tokens ADD COLUMN last_used_at BIGINT;

-- Revoked tokens and deleted tenants, in order: every server process polls this each second.
CREATE TABLE auth_events (
    id        BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    token_id  BIGINT,
    at        BIGINT NOT NULL
);
