-- Compressed chunks (apiserver/src/storage/chunk.rs, docs/storage.md): the samples of one
-- series in one 2 h window, moved out of `samples` by compaction once the window has closed.
-- `start_ts`/`end_ts` are the first and last sample's time; a window holds one chunk, or
-- several for a series denser than 8192 samples per window (MEDIUMBLOB: up to 16 MiB).
CREATE TABLE chunks (
    series_id BIGINT     NOT NULL,
    start_ts  BIGINT     NOT NULL,
    end_ts    BIGINT     NOT NULL,
    count     BIGINT     NOT NULL,
    data      MEDIUMBLOB NOT NULL,
    PRIMARY KEY (series_id, start_ts)
) ENGINE=InnoDB;

-- The 1m and 5m rollup rows of a compacted window, as one chunk per (series, window): five
-- columns (count, sum, min, max; last at its own time) in the same encoding.

CREATE TABLE rollup_1m_chunks (
    series_id BIGINT     NOT NULL,
    start_ts  BIGINT     NOT NULL,
    end_ts    BIGINT     NOT NULL,
    count     BIGINT     NOT NULL,
    data      MEDIUMBLOB NOT NULL,
    PRIMARY KEY (series_id, start_ts)
) ENGINE=InnoDB;

CREATE TABLE rollup_5m_chunks (
    series_id BIGINT     NOT NULL,
    start_ts  BIGINT     NOT NULL,
    end_ts    BIGINT     NOT NULL,
    count     BIGINT     NOT NULL,
    data      MEDIUMBLOB NOT NULL,
    PRIMARY KEY (series_id, start_ts)
) ENGINE=InnoDB;
