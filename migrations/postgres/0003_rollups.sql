CREATE TABLE rollup_1m (
    series_id BIGINT NOT NULL,
    bucket    BIGINT NOT NULL,
    count     BIGINT NOT NULL,
    sum       DOUBLE PRECISION NOT NULL,
    min       DOUBLE PRECISION NOT NULL,
    max       DOUBLE PRECISION NOT NULL,
    last      DOUBLE PRECISION NOT NULL,
    last_ts   BIGINT NOT NULL,
    PRIMARY KEY (series_id, bucket)
);

CREATE TABLE rollup_5m (
    series_id BIGINT NOT NULL,
    bucket    BIGINT NOT NULL,
    count     BIGINT NOT NULL,
    sum       DOUBLE PRECISION NOT NULL,
    min       DOUBLE PRECISION NOT NULL,
    max       DOUBLE PRECISION NOT NULL,
    last      DOUBLE PRECISION NOT NULL,
    last_ts   BIGINT NOT NULL,
    PRIMARY KEY (series_id, bucket)
);

ALTER TABLE tenants ADD COLUMN retention_raw_ms BIGINT;
ALTER TABLE tenants ADD COLUMN retention_1m_ms BIGINT;
ALTER TABLE tenants ADD COLUMN retention_5m_ms BIGINT;
