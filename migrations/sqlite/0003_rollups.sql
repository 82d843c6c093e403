-- 1m and 5m rollups per series: count, sum, min, max and the last value (by time) of each bucket.
CREATE TABLE rollup_1m (
    series_id INTEGER NOT NULL,
    bucket    INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    sum       REAL    NOT NULL,
    min       REAL    NOT NULL,
    max       REAL    NOT NULL,
    last      REAL    NOT NULL,
    last_ts   INTEGER NOT NULL,
    PRIMARY KEY (series_id, bucket)
) WITHOUT ROWID;

CREATE TABLE rollup_5m (
    series_id INTEGER NOT NULL,
    bucket    INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    sum       REAL    NOT NULL,
    min       REAL    NOT NULL,
    max       REAL    NOT NULL,
    last      REAL    NOT NULL,
    last_ts   INTEGER NOT NULL,
    PRIMARY KEY (series_id, bucket)
) WITHOUT ROWID;

-- Per-tenant retention overrides in ms; NULL = the server's default.
ALTER TABLE tenants ADD COLUMN retention_raw_ms INTEGER;
ALTER TABLE tenants ADD COLUMN retention_1m_ms INTEGER;
ALTER TABLE tenants ADD COLUMN retention_5m_ms INTEGER;
