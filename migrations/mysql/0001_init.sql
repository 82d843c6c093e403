-- microdash schema v1 (MariaDB / MySQL, InnoDB). Timestamps are Unix milliseconds.
-- Long text keys are indexed through a SHA-256 column because InnoDB limits index key length.
-- Case-sensitive keys (metric names, dedupe ids, dashboard names) use a binary collation; the
-- adapter reads them back through CAST(... AS CHAR) so they decode as text.
CREATE TABLE tenants (
    id           BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name         VARCHAR(63)  NOT NULL UNIQUE,
    display_name VARCHAR(255),
    created_at   BIGINT       NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE tokens (
    id         BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tenant_id  BIGINT      NOT NULL,
    hash       BINARY(32)  NOT NULL UNIQUE,
    prefix     VARCHAR(16) NOT NULL,
    scopes     VARCHAR(64) NOT NULL,
    created_at BIGINT      NOT NULL,
    KEY tokens_tenant (tenant_id),
    FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE series (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tenant_id   BIGINT       NOT NULL,
    metric      VARCHAR(200) COLLATE utf8mb4_bin NOT NULL,
    labels      TEXT         NOT NULL,
    labels_hash BINARY(32)   NOT NULL,
    created_at  BIGINT       NOT NULL,
    UNIQUE KEY series_key (tenant_id, metric, labels_hash),
    FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE samples (
    series_id BIGINT NOT NULL,
    ts        BIGINT NOT NULL,
    value     DOUBLE NOT NULL,
    PRIMARY KEY (series_id, ts)
) ENGINE=InnoDB;

CREATE TABLE dedupe (
    tenant_id BIGINT       NOT NULL,
    dedupe_id VARCHAR(128) COLLATE utf8mb4_bin NOT NULL,
    seen_at   BIGINT       NOT NULL,
    PRIMARY KEY (tenant_id, dedupe_id),
    KEY dedupe_seen_at (seen_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE sessions (
    hash       BINARY(32) NOT NULL PRIMARY KEY,
    token_id   BIGINT     NOT NULL,
    expires_at BIGINT     NOT NULL,
    FOREIGN KEY (token_id) REFERENCES tokens(id) ON DELETE CASCADE
) ENGINE=InnoDB;

CREATE TABLE dashboards (
    tenant_id  BIGINT       NOT NULL,
    name       VARCHAR(100) COLLATE utf8mb4_bin NOT NULL,
    body       MEDIUMTEXT   NOT NULL,
    updated_at BIGINT       NOT NULL,
    PRIMARY KEY (tenant_id, name),
    FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
