//! The write-ahead log of the in-memory head (embedded mode): a folder of segment files
//! (`00000000000000000001.wal`, …), each a sequence of records
//! `[payload length: u32 LE][CRC-32 of the payload: u32 LE][payload]`.
//!
//! The writer appends one record per group and `fdatasync`s it before answering (group
//! commit). A checkpoint starts a new segment holding a snapshot of what the head still needs
//! and deletes every older segment. Replay reads the segments in order; a record that is cut
//! short or fails its checksum ends the log (a crash mid-append): the segment is truncated there
//! with a warning, and start-up goes on.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Payloads past this size are refused on append and taken for garbage on replay.
pub const MAX_RECORD: usize = 256 << 20;

/// One head row as the log keeps it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub tenant_id: i64,
    pub series_id: i64,
    pub ts: i64,
    pub value: f64,
}

pub struct Wal {
    dir: PathBuf,
    /// Sequence number and file of the segment being appended to (shared with the answering
    /// thread, which syncs it: `sync_handle`).
    current: (u64, Arc<File>),
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// The segments in `dir`, oldest first.
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            out.push((seq, path));
        }
    }
    out.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(out)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Encodes rows as one record payload: runs of one series as
/// `[tenant i64][series i64][n u32]` then `n × [ts i64][value f64 bits]`, all little-endian.
pub fn encode(rows: &[Row]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 16 + 64);
    let mut i = 0;
    while i < rows.len() {
        let (tenant, series) = (rows[i].tenant_id, rows[i].series_id);
        let mut j = i;
        while j < rows.len() && rows[j].series_id == series && rows[j].tenant_id == tenant && j - i < u32::MAX as usize
        {
            j += 1;
        }
        out.extend_from_slice(&tenant.to_le_bytes());
        out.extend_from_slice(&series.to_le_bytes());
        out.extend_from_slice(&((j - i) as u32).to_le_bytes());
        for row in &rows[i..j] {
            out.extend_from_slice(&row.ts.to_le_bytes());
            out.extend_from_slice(&row.value.to_bits().to_le_bytes());
        }
        i = j;
    }
    out
}

/// The rows of a payload; `None` when it does not parse (which its checksum makes unlikely).
pub fn decode(mut data: &[u8]) -> Option<Vec<Row>> {
    fn take<const N: usize>(data: &mut &[u8]) -> Option<[u8; N]> {
        let (head, rest) = data.split_first_chunk::<N>()?;
        *data = rest;
        Some(*head)
    }
    let mut rows = Vec::with_capacity(data.len() / 16);
    while !data.is_empty() {
        let tenant_id = i64::from_le_bytes(take(&mut data)?);
        let series_id = i64::from_le_bytes(take(&mut data)?);
        let n = u32::from_le_bytes(take(&mut data)?);
        for _ in 0..n {
            let ts = i64::from_le_bytes(take(&mut data)?);
            let value = f64::from_bits(u64::from_le_bytes(take(&mut data)?));
            rows.push(Row { tenant_id, series_id, ts, value });
        }
    }
    Some(rows)
}

/// What `Wal::open` found.
pub struct Replayed {
    pub rows: Vec<Row>,
    pub records: usize,
    pub segments: usize,
    /// Bytes cut off a torn or corrupt tail.
    pub truncated: u64,
}

impl Wal {
    /// Opens (creating) the log in `dir` and reads back every record in it.
    pub fn open(dir: &Path) -> io::Result<(Wal, Replayed)> {
        std::fs::create_dir_all(dir)?;
        let found = segments(dir)?;
        let mut replayed = Replayed { rows: Vec::new(), records: 0, segments: found.len(), truncated: 0 };
        for (index, (_, path)) in found.iter().enumerate() {
            let data = std::fs::read(path)?;
            let mut at = 0usize;
            let good_end = loop {
                if at == data.len() {
                    break at;
                }
                let Some(header) = data.get(at..at + 8) else { break at };
                let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
                let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
                if len > MAX_RECORD {
                    break at;
                }
                let Some(payload) = data.get(at + 8..at + 8 + len) else { break at };
                if crc32fast::hash(payload) != crc {
                    break at;
                }
                let Some(rows) = decode(payload) else { break at };
                replayed.rows.extend(rows);
                replayed.records += 1;
                at += 8 + len;
            };
            if good_end < data.len() {
                let cut = (data.len() - good_end) as u64;
                replayed.truncated += cut;
                tracing::warn!(
                    segment = %path.display(),
                    offset = good_end,
                    bytes = cut,
                    last_segment = index + 1 == found.len(),
                    "The head's write-ahead log ends in a torn or corrupt record (a crash mid-append): truncating it there."
                );
                OpenOptions::new().write(true).open(path)?.set_len(good_end as u64)?;
            }
        }
        let seq = found.last().map(|(seq, _)| seq + 1).unwrap_or(1);
        let wal = Wal { dir: dir.to_path_buf(), current: (seq, Self::create_segment(dir, seq)?) };
        Ok((wal, replayed))
    }

    fn create_segment(dir: &Path, seq: u64) -> io::Result<Arc<File>> {
        let file = OpenOptions::new().create(true).append(true).open(dir.join(segment_name(seq)))?;
        sync_dir(dir)?;
        Ok(Arc::new(file))
    }

    /// Appends one record of `rows` and makes it durable (`fdatasync`).
    pub fn append(&mut self, rows: &[Row]) -> io::Result<()> {
        self.write(rows)?;
        self.sync()
    }

    /// Appends one record of `rows` without waiting for the disk: the caller makes it durable
    /// with `sync_data` on a `sync_handle` taken after this, before anyone relies on it.
    pub fn write(&mut self, rows: &[Row]) -> io::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let payload = encode(rows);
        if payload.len() > MAX_RECORD {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a WAL record of more than 256 MiB"));
        }
        let mut record = Vec::with_capacity(payload.len() + 8);
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        let before = self.current.1.metadata()?.len();
        let written = (&*self.current.1).write_all(&record);
        if written.is_err() {
            // A partial record would end the log on replay and hide every later one: cut it off.
            let _ = self.current.1.set_len(before);
        }
        written
    }

    /// `fdatasync` of the current segment: every record written to it is durable after this.
    pub fn sync(&self) -> io::Result<()> {
        self.current.1.sync_data()
    }

    /// The current segment, for an `fdatasync` on another thread (`File::sync_data` of this
    /// handle covers every record `write` put in the segment before it).
    pub fn sync_handle(&self) -> Arc<File> {
        self.current.1.clone()
    }

    /// Starts a new segment holding `keep` (what the head still needs, in records of at most
    /// 100 000 rows), then deletes every older segment.
    pub fn checkpoint(&mut self, keep: &[Row]) -> io::Result<()> {
        let seq = self.current.0 + 1;
        let file = Self::create_segment(&self.dir, seq)?;
        let old = std::mem::replace(&mut self.current, (seq, file));
        drop(old);
        for part in keep.chunks(100_000) {
            self.append(part)?;
        }
        for (s, path) in segments(&self.dir)? {
            if s < seq {
                std::fs::remove_file(path)?;
            }
        }
        sync_dir(&self.dir)
    }

    /// After a clean stop with the head written out: removes the log and its folder.
    pub fn remove(self) -> io::Result<()> {
        let Wal { dir, current } = self;
        drop(current);
        for (_, path) in segments(&dir)? {
            std::fs::remove_file(path)?;
        }
        match std::fs::remove_dir(&dir) {
            Ok(()) => Ok(()),
            // Something else lives there (not ours to delete).
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Bytes in the log's segments.
    pub fn size(&self) -> u64 {
        segments(&self.dir)
            .map(|s| s.iter().filter_map(|(_, p)| std::fs::metadata(p).ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(series: i64, n: i64) -> Vec<Row> {
        (0..n).map(|i| Row { tenant_id: 7, series_id: series, ts: 1000 + i, value: i as f64 * 0.5 }).collect()
    }

    #[test]
    fn appended_records_come_back_in_order_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, replayed) = Wal::open(dir.path()).unwrap();
        assert!(replayed.rows.is_empty());
        let mut all = rows(1, 3);
        all.push(Row { tenant_id: 8, series_id: 2, ts: -5, value: f64::NEG_INFINITY });
        wal.append(&all).unwrap();
        wal.append(&rows(3, 2)).unwrap();
        drop(wal);
        let (_, replayed) = Wal::open(dir.path()).unwrap();
        all.extend(rows(3, 2));
        assert_eq!(replayed.rows, all);
        assert_eq!(replayed.records, 2);
        assert_eq!(replayed.truncated, 0);
    }

    #[test]
    fn a_torn_last_record_is_truncated_and_the_log_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&rows(1, 4)).unwrap();
        wal.append(&rows(2, 4)).unwrap();
        let path = dir.path().join(segment_name(wal.current.0));
        drop(wal);
        // A crash in the middle of the second append.
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 10).unwrap();
        let (mut wal, replayed) = Wal::open(dir.path()).unwrap();
        assert_eq!(replayed.rows, rows(1, 4));
        assert!(replayed.truncated > 0);
        // The torn bytes are gone: what is appended next is read back after the first record.
        wal.append(&rows(5, 1)).unwrap();
        drop(wal);
        let (_, replayed) = Wal::open(dir.path()).unwrap();
        let mut expected = rows(1, 4);
        expected.extend(rows(5, 1));
        assert_eq!(replayed.rows, expected);
        assert_eq!(replayed.truncated, 0);
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum_and_ends_the_log_there() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&rows(1, 2)).unwrap();
        wal.append(&rows(2, 2)).unwrap();
        let path = dir.path().join(segment_name(wal.current.0));
        drop(wal);
        let mut data = std::fs::read(&path).unwrap();
        let last = data.len() - 1;
        data[last] ^= 1;
        std::fs::write(&path, data).unwrap();
        let (_, replayed) = Wal::open(dir.path()).unwrap();
        assert_eq!(replayed.rows, rows(1, 2));
    }

    #[test]
    fn a_checkpoint_keeps_only_what_is_given_and_deletes_older_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&rows(1, 5)).unwrap();
        wal.checkpoint(&rows(9, 2)).unwrap();
        wal.append(&rows(3, 1)).unwrap();
        assert_eq!(segments(dir.path()).unwrap().len(), 1, "the old segment is deleted");
        drop(wal);
        let (wal, replayed) = Wal::open(dir.path()).unwrap();
        let mut expected = rows(9, 2);
        expected.extend(rows(3, 1));
        assert_eq!(replayed.rows, expected);
        wal.remove().unwrap();
        assert!(!dir.path().exists(), "a clean stop leaves no log behind");
    }

    #[test]
    fn garbage_never_panics_the_decoder() {
        assert_eq!(decode(&[1, 2, 3]), None);
        assert_eq!(decode(&[]), Some(Vec::new()));
    }
}
