-- Exporters (issue 18): a tenant's pushes of its latest samples to an OTLP/HTTP receiver. The
-- spec is the JSON the API took (endpoint, headers, interval, match). Names are lowercase
-- letters, digits and `-` (checked by the API), so the table's collation serves them.
CREATE TABLE exporters (
    tenant_id  BIGINT       NOT NULL,
    name       VARCHAR(63)  NOT NULL,
    spec       MEDIUMTEXT   NOT NULL,
    updated_at BIGINT       NOT NULL,
    PRIMARY KEY (tenant_id, name),
    FOREIGN KEY (tenant_id) REFERENCES tenants(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
