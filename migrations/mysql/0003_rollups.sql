CREATE TABLE rollup_1m (
    series_id BIGINT NOT NULL,
    bucket    BIGINT NOT NULL,
    count     BIGINT NOT NULL,
    sum       DOUBLE NOT NULL,
    min       DOUBLE NOT NULL,
    max       DOUBLE NOT NULL,
    last      DOUBLE NOT NULL,
    last_ts   BIGINT NOT NULL,
    PRIMARY KEY (series_id, bucket)
) ENGINE=InnoDB;

CREATE TABLE rollup_5m (
    series_id BIGINT NOT NULL,
    bucket    BIGINT NOT NULL,
    count     BIGINT NOT NULL,
    sum       DOUBLE NOT NULL,
    min       DOUBLE NOT NULL,
    max       DOUBLE NOT NULL,
    last      DOUBLE NOT NULL,
    last_ts   BIGINT NOT NULL,
    PRIMARY KEY (series_id, bucket)
) ENGINE=InnoDB;

ALTER TABLE tenants ADD COLUMN retention_raw_ms BIGINT NULL,
                    ADD COLUMN retention_1m_ms BIGINT NULL,
                    ADD COLUMN retention_5m_ms BIGINT NULL;
