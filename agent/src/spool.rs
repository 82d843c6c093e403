//! The disk spool: batches that could not be sent yet, one file per batch, oldest first.
//!
//! A batch is written to `<seq>.json.tmp`, fsynced, renamed to `<seq>.json` and the directory
//! fsynced, so after a crash a file is either whole or a leftover temp file, which `open`
//! deletes. Names are the zero-padded sequence, so the directory listing sorts oldest first.
//! The total size is bounded: making room drops the oldest batches.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sample::Batch;

const BATCH_SUFFIX: &str = ".json";
const TEMP_SUFFIX: &str = ".json.tmp";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    seq: u64,
    bytes: u64,
}

/// What an append did besides storing the batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Oldest batches deleted to stay under the size bound.
    pub dropped_oldest: usize,
    /// The batch itself was larger than the whole bound and was not stored.
    pub dropped_self: bool,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Oldest first; mirrors the directory so nothing is listed twice per send.
    entries: VecDeque<Entry>,
    bytes: u64,
}

impl Spool {
    /// Opens (creating) the spool directory, deletes temp files a crash left behind, and
    /// indexes the batches of an earlier run.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut entries = Vec::new();
        for item in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let item = item.map_err(|e| Error::io(&dir, e))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(TEMP_SUFFIX) {
                // An append that never reached its rename: the batch was never acknowledged as
                // spooled, and its content may be partial.
                tracing::debug!(file = name, "Deleting a partial spool file.");
                fs::remove_file(item.path()).map_err(|e| Error::io(item.path(), e))?;
                continue;
            }
            let Some(seq) = name.strip_suffix(BATCH_SUFFIX).and_then(|stem| stem.parse::<u64>().ok()) else {
                continue;
            };
            let bytes = item.metadata().map_err(|e| Error::io(item.path(), e))?.len();
            entries.push(Entry { seq, bytes });
        }
        entries.sort_by_key(|e| e.seq);
        let mut spool = Self { dir, max_bytes, bytes: entries.iter().map(|e| e.bytes).sum(), entries: entries.into() };
        // The bound may have been lowered since the last run.
        spool.make_room(0)?;
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of all spooled batches.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn oldest(&self) -> Option<u64> {
        self.entries.front().map(|e| e.seq)
    }

    pub fn newest(&self) -> Option<u64> {
        self.entries.back().map(|e| e.seq)
    }

    /// Sequence numbers, oldest first.
    pub fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries.iter().map(|e| e.seq)
    }

    /// Stores a batch durably, after dropping the oldest batches if it would not fit.
    pub fn append(&mut self, batch: &Batch) -> Result<Appended> {
        let bytes = batch.body.len() as u64;
        if bytes > self.max_bytes {
            return Ok(Appended { dropped_oldest: 0, dropped_self: true });
        }
        let dropped_oldest = self.make_room(bytes)?;
        let temp = self.dir.join(format!("{:020}{TEMP_SUFFIX}", batch.seq));
        let path = self.path(batch.seq);
        write_synced(&temp, &batch.body).map_err(|e| {
            let _ = fs::remove_file(&temp);
            Error::io(&temp, e)
        })?;
        fs::rename(&temp, &path).map_err(|e| Error::io(&path, e))?;
        sync_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let entry = Entry { seq: batch.seq, bytes };
        // Sequences only grow, but keep the index sorted even if a caller appends out of order.
        let at = self.entries.partition_point(|e| e.seq < batch.seq);
        if self.entries.get(at).is_some_and(|e| e.seq == batch.seq) {
            self.bytes -= self.entries[at].bytes;
            self.entries[at] = entry;
        } else {
            self.entries.insert(at, entry);
        }
        self.bytes += bytes;
        Ok(Appended { dropped_oldest, dropped_self: false })
    }

    pub fn read(&self, seq: u64) -> Result<Batch> {
        let path = self.path(seq);
        let body = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Batch { seq, body })
    }

    /// Deletes a batch once the server has it (or can never take it).
    ///
    /// The batch leaves the index even if the file cannot be deleted, so a failing disk never
    /// makes the agent send the same batch in a loop; a restart would replay it once more,
    /// which the server's dedupe absorbs.
    pub fn remove(&mut self, seq: u64) -> Result<()> {
        if let Some(at) = self.entries.iter().position(|e| e.seq == seq) {
            let entry = self.entries.remove(at).expect("index in range");
            self.bytes -= entry.bytes;
        }
        let path = self.path(seq);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Drops oldest batches until `incoming` more bytes fit; returns how many were dropped.
    fn make_room(&mut self, incoming: u64) -> Result<usize> {
        let mut dropped = 0;
        while self.bytes + incoming > self.max_bytes {
            let Some(oldest) = self.oldest() else { break };
            if let Err(error) = self.remove(oldest) {
                tracing::warn!(%error, "Cannot delete a dropped spool file.");
            }
            dropped += 1;
        }
        Ok(dropped)
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}{BATCH_SUFFIX}"))
    }
}

fn write_synced(path: &Path, body: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    file.write_all(body)?;
    file.sync_all()
}

/// Makes a rename durable: the new directory entry is only on disk after the directory is synced.
fn sync_dir(dir: &Path) -> io::Result<()> {
    if cfg!(unix) {
        File::open(dir)?.sync_all()
    } else {
        // Windows cannot open a directory as a file; its rename is as durable as it gets.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seq: u64, size: usize) -> Batch {
        Batch { seq, body: vec![b'x'; size] }
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    #[test]
    fn batches_come_back_oldest_first_with_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        for seq in [30, 10, 20] {
            spool.append(&batch(seq, seq as usize)).unwrap();
        }
        assert_eq!(spool.seqs().collect::<Vec<_>>(), vec![10, 20, 30]);
        assert_eq!(spool.bytes(), 60);
        assert_eq!(spool.read(20).unwrap(), batch(20, 20));
        spool.remove(10).unwrap();
        assert_eq!(spool.oldest(), Some(20));
        assert_eq!(spool.newest(), Some(30));
        assert_eq!(spool.bytes(), 50);
        assert_eq!(
            files(dir.path()),
            vec!["00000000000000000020.json".to_string(), "00000000000000000030.json".to_string()]
        );
    }

    #[test]
    fn file_names_sort_like_sequences() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&batch(9, 1)).unwrap();
        spool.append(&batch(1_764_104_400_000, 1)).unwrap();
        let names = files(dir.path());
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(names[0].starts_with("00000000000000000009"));
    }

    #[test]
    fn a_restart_finds_the_batches_of_the_previous_run_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
            for seq in 1..=5 {
                spool.append(&batch(seq, 10)).unwrap();
            }
            spool.remove(1).unwrap();
        }
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.seqs().collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        assert_eq!(spool.bytes(), 40);
        assert_eq!(spool.read(4).unwrap(), batch(4, 10));
    }

    #[test]
    fn partial_temp_files_from_a_crash_are_ignored_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
            spool.append(&batch(1, 10)).unwrap();
        }
        // A crash between write and rename leaves a temp file, possibly truncated.
        fs::write(dir.path().join("00000000000000000002.json.tmp"), b"{\"samples\":[{\"met").unwrap();
        fs::write(dir.path().join("README"), b"not a batch").unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.seqs().collect::<Vec<_>>(), vec![1]);
        assert!(!dir.path().join("00000000000000000002.json.tmp").exists());
        assert!(dir.path().join("README").exists(), "foreign files are left alone");
    }

    #[test]
    fn the_size_bound_drops_the_oldest_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 100).unwrap();
        for seq in 1..=3 {
            assert_eq!(spool.append(&batch(seq, 30)).unwrap(), Appended::default());
        }
        let one_dropped = Appended { dropped_oldest: 1, dropped_self: false };
        assert_eq!(spool.append(&batch(4, 30)).unwrap(), one_dropped);
        assert_eq!(spool.append(&batch(5, 30)).unwrap(), one_dropped);
        assert_eq!(spool.seqs().collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(spool.bytes(), 90);

        // A bigger batch makes room for itself by dropping as many old ones as it takes.
        assert_eq!(spool.append(&batch(6, 70)).unwrap().dropped_oldest, 2);
        assert_eq!(spool.seqs().collect::<Vec<_>>(), vec![5, 6]);
        assert_eq!(spool.bytes(), 100);
        assert_eq!(files(dir.path()).len(), 2);

        let too_big = spool.append(&batch(7, 101)).unwrap();
        assert!(too_big.dropped_self);
        assert_eq!(spool.seqs().collect::<Vec<_>>(), vec![5, 6]);
    }

    #[test]
    fn a_lower_bound_after_restart_trims_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(dir.path(), 1000).unwrap();
            for seq in 1..=5 {
                spool.append(&batch(seq, 30)).unwrap();
            }
        }
        let spool = Spool::open(dir.path(), 60).unwrap();
        assert_eq!(spool.seqs().collect::<Vec<_>>(), vec![4, 5]);
    }
}
