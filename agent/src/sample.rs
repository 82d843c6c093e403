//! The wire shape the agent sends: samples, and batches of one collection each.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One measurement, as `POST /api/v1/metrics/bulk` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub metric: String,
    pub value: f64,
    /// Unix milliseconds of the collection, the same for every sample of a batch.
    pub ts: i64,
    pub labels: BTreeMap<String, String>,
    /// `<host>-<batch seq>-<index>`: the same on every retry of a batch, so the server can
    /// count a replay as a duplicate instead of storing it twice.
    pub dedupe_id: String,
}

/// The request body: `{"samples":[...]}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SampleBatchBody {
    pub samples: Vec<Sample>,
}

/// One collection, ready to send: the sequence number orders the spool and names the
/// dedupe ids; the body is kept serialized so a replay sends exactly the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub seq: u64,
    pub body: Vec<u8>,
}

impl Batch {
    pub fn new(seq: u64, samples: Vec<Sample>) -> Self {
        let body = serde_json::to_vec(&SampleBatchBody { samples }).expect("a sample batch always serializes");
        Self { seq, body }
    }

    /// Parses the body back; used by tests and `--once`.
    pub fn samples(&self) -> serde_json::Result<Vec<Sample>> {
        serde_json::from_slice::<SampleBatchBody>(&self.body).map(|b| b.samples)
    }
}

/// Hands out batch sequence numbers: the collection time in Unix milliseconds, made strictly
/// increasing. Using time (not a counter from 1) keeps dedupe ids unique across restarts of the
/// agent, so new samples are never mistaken for duplicates of an earlier run's.
#[derive(Debug, Clone)]
pub struct BatchSeq {
    last: u64,
}

impl BatchSeq {
    /// `after` is the highest sequence already used, e.g. the newest file in the spool.
    pub fn starting_after(after: Option<u64>) -> Self {
        Self { last: after.unwrap_or(0) }
    }

    pub fn next(&mut self, now_ms: u64) -> u64 {
        self.last = now_ms.max(self.last + 1);
        self.last
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_.:-]*`: the server's rule for metric names and label keys.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_server_rule() {
        for ok in ["cpu.usage", "_x", "a:b-c_d.e", "load.15"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "1cpu", ".x", "cpu usage", "cpu/usage", "é"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn batch_seq_is_strictly_increasing_even_when_the_clock_stalls_or_goes_back() {
        let mut seq = BatchSeq::starting_after(Some(1_000));
        assert_eq!(seq.next(500), 1_001, "never below what the spool already holds");
        assert_eq!(seq.next(5_000), 5_000);
        assert_eq!(seq.next(5_000), 5_001);
        assert_eq!(seq.next(4_000), 5_002);
    }

    #[test]
    fn batch_body_is_the_bulk_request_shape() {
        let sample = Sample {
            metric: "cpu.usage".into(),
            value: 42.5,
            ts: 1_764_104_400_000,
            labels: BTreeMap::from([("host".into(), "a".into()), ("cpu".into(), "total".into())]),
            dedupe_id: "a-7-0".into(),
        };
        let batch = Batch::new(7, vec![sample.clone()]);
        let json: serde_json::Value = serde_json::from_slice(&batch.body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"samples":[{"metric":"cpu.usage","value":42.5,"ts":1764104400000i64,
                "labels":{"host":"a","cpu":"total"},"dedupe_id":"a-7-0"}]})
        );
        assert_eq!(batch.samples().unwrap(), vec![sample]);
    }
}
