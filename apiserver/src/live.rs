//! The live hub: every committed sample, fanned out to the SSE streams of its tenant.
//!
//! In-process today (a broadcast channel plus a bounded replay buffer for `Last-Event-ID`).
//! Memory is bounded: a slow subscriber that falls behind the channel skips what it missed and
//! is told so, it never makes the hub buffer more.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::domain::Sample;

#[derive(Debug)]
pub struct LiveEvent {
    /// Increasing across the process; the SSE `id:`.
    pub id: u64,
    pub tenant_id: i64,
    pub sample: Sample,
}

pub struct LiveHub {
    next_id: AtomicU64,
    sender: broadcast::Sender<Arc<LiveEvent>>,
    recent: Mutex<VecDeque<Arc<LiveEvent>>>,
    replay_capacity: usize,
}

impl LiveHub {
    pub fn new(channel_capacity: usize, replay_capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(channel_capacity);
        // Start ids at the wall clock so ids stay increasing across restarts of the server,
        // and a resuming client never mistakes new events for ones it has seen.
        let start = (crate::domain::now_ms().max(0) as u64) << 10;
        Self { next_id: AtomicU64::new(start), sender, recent: Mutex::new(VecDeque::new()), replay_capacity }
    }

    pub fn publish(&self, tenant_id: i64, samples: impl IntoIterator<Item = Sample>) {
        let mut recent = self.recent.lock().expect("live buffer poisoned");
        for sample in samples {
            let event = Arc::new(LiveEvent { id: self.next_id.fetch_add(1, Ordering::Relaxed), tenant_id, sample });
            if recent.len() == self.replay_capacity {
                recent.pop_front();
            }
            recent.push_back(event.clone());
            // No subscribers is fine.
            let _ = self.sender.send(event);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.sender.subscribe()
    }

    /// Buffered events after `last_id`, and whether the buffer still reaches back that far.
    pub fn replay_after(&self, last_id: u64) -> (Vec<Arc<LiveEvent>>, bool) {
        let recent = self.recent.lock().expect("live buffer poisoned");
        let complete = recent.front().is_none_or(|e| e.id <= last_id + 1);
        (recent.iter().filter(|e| e.id > last_id).cloned().collect(), complete)
    }
}

impl crate::pipeline::CommitListener for LiveHub {
    fn committed(&self, tenant_id: i64, samples: &[&Sample]) {
        self.publish(tenant_id, samples.iter().map(|s| (*s).clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Labels;

    fn sample(v: f64) -> Sample {
        Sample { metric: "m".into(), labels: Labels::new(), ts: 1, value: v, dedupe_id: None }
    }

    #[test]
    fn ids_increase_and_replay_is_bounded() {
        let hub = LiveHub::new(16, 3);
        let mut rx = hub.subscribe();
        hub.publish(1, (0..5).map(|i| sample(i as f64)));
        let first = rx.try_recv().unwrap();
        let second = rx.try_recv().unwrap();
        assert!(second.id > first.id);
        let (events, complete) = hub.replay_after(first.id);
        assert_eq!(events.len(), 3, "only the last 3 are kept");
        assert!(!complete, "events after first.id were dropped from the buffer");
        let (events, complete) = hub.replay_after(second.id + 1);
        assert_eq!(events.len(), 2);
        assert!(complete);
    }
}
