-- Compressed chunks (apiserver/src/storage/chunk.rs, docs/storage.md): the samples of one
-- series in one 2 h window, moved out of `samples` by compaction once the window has closed.
-- `start_ts`/`end_ts` are the first and last sample's time; a window holds one chunk, or
-- several for a series denser than 8192 samples per window. Rowid tables, unlike the other
-- time-series tables: a WITHOUT ROWID row keeps only ~1000 bytes in its page and spills the
-- rest of a chunk to an overflow page of its own (a 1 KB rollup chunk took 4 KB on disk).
CREATE TABLE chunks (
    id        INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    start_ts  INTEGER NOT NULL,
    end_ts    INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    data      BLOB    NOT NULL,
    UNIQUE (series_id, start_ts)
);

-- The 1m and 5m rollup rows of a compacted window, as one chunk per (series, window): five
-- columns (count, sum, min, max; last at its own time) in the same encoding.

CREATE TABLE rollup_1m_chunks (
    id        INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    start_ts  INTEGER NOT NULL,
    end_ts    INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    data      BLOB    NOT NULL,
    UNIQUE (series_id, start_ts)
);

CREATE TABLE rollup_5m_chunks (
    id        INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    start_ts  INTEGER NOT NULL,
    end_ts    INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    data      BLOB    NOT NULL,
    UNIQUE (series_id, start_ts)
);
