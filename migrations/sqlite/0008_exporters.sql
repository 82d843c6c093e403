-- Exporters (issue 18): a tenant's pushes of its latest samples to an OTLP/HTTP receiver. The
-- spec is the JSON the API took (endpoint, headers, interval, match).
CREATE TABLE exporters (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    spec       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
) WITHOUT ROWID;
