-- Tenancy over time (MariaDB). InnoDB keeps the AUTO_INCREMENT counter across restarts since
-- MariaDB 10.2.4 / MySQL 8.0, so tenant, token and series ids are never reused. A deleted
-- tenant is first marked (`deleted_at`, its name freed as `~<id>`), which hides it at once; its
-- rows are then removed in bounded chunks and the tenant row last.
ALTER TABLE tenants ADD COLUMN deleted_at BIGINT NULL;

-- Tokens may expire; `last_used_at` is kept to within a few seconds.
ALTER TABLE tokens ADD COLUMN expires_at BIGINT NULL,
                   ADD COLUMN last_used_at BIGINT NULL;

-- Revoked tokens and deleted tenants, in order: every server process polls this each second.
CREATE TABLE auth_events (
    id        BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    token_id  BIGINT NULL,
    at        BIGINT NOT NULL
) ENGINE=InnoDB;
