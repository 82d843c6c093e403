-- Exporters (issue 18): a tenant's pushes of its latest samples to an OTLP/HTTP receiver. The
-- spec is the JSON the API took (endpoint, headers, interval, match).
CREATE TABLE exporters (
    tenant_id  BIGINT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    spec       TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
