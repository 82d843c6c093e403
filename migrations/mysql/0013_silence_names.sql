-- Silences written by name (issue 23): `microdash apply` (`kind: Silence`), the `Silence`
-- resource of the operator and `PUT /api/v1/silences/by-name/{name}` give a silence a stable
-- name, unique per tenant, so that writing the same one again updates it instead of adding a
-- second. Silences created by POST have none (NULL, which a unique index does not compare).
-- Names are Kubernetes object names (up to 253 characters), as rule and channel names.
ALTER TABLE silences ADD COLUMN name VARCHAR(253) NULL;
CREATE UNIQUE INDEX silences_by_name ON silences (tenant_id, name);
