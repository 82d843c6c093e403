//! The live hub: every committed sample, fanned out to the SSE streams of its tenant.
//!
//! In-process (a broadcast channel plus a bounded replay buffer for `Last-Event-ID`); in
//! distributed mode each API process has its own hub, fed from Redis pub/sub. Memory is
//! bounded: a slow subscriber that falls behind the channel skips what it missed and is told
//! so, it never makes the hub buffer more.
//!
//! Event ids are time-based: `id >> 10` is (about) the Unix millisecond the event was
//! published, i.e. when its sample was committed. So an id still means something after a
//! restart, or on another API process: a stream resuming from an id older than the buffer can
//! read the gap from storage (see `http::stream`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::domain::Sample;

/// Bits of an event id below the millisecond: 1024 events per ms before ids run ahead of
/// the clock (they never go backwards).
pub const ID_SUBMS_BITS: u32 = 10;

/// The id of the first event published at Unix millisecond `ms`.
pub fn id_at_ms(ms: i64) -> u64 {
    (ms.max(0) as u64) << ID_SUBMS_BITS
}

/// The Unix millisecond an event id was published at.
pub fn ms_of_id(id: u64) -> i64 {
    (id >> ID_SUBMS_BITS) as i64
}

#[derive(Debug)]
pub struct LiveEvent {
    /// Increasing across the process, and time-based; the SSE `id:`.
    pub id: u64,
    pub tenant_id: i64,
    pub sample: Sample,
}

pub struct LiveHub {
    sender: broadcast::Sender<Arc<LiveEvent>>,
    recent: Mutex<Recent>,
    replay_capacity: usize,
}

struct Recent {
    /// The last id handed out.
    last_id: u64,
    /// Every event with an id ≥ this is in `events` (or was published after them): ids below
    /// it were published before this process started, or evicted.
    floor: u64,
    events: VecDeque<Arc<LiveEvent>>,
}

/// What the buffer holds for a stream resuming after an id.
pub struct Replay {
    /// Buffered events after the id, oldest first.
    pub events: Vec<Arc<LiveEvent>>,
    /// False when events after the id may be missing from the buffer (evicted, or published
    /// before this process started): the stream must read the gap before `floor` elsewhere.
    pub complete: bool,
    /// The buffer holds every event from this id on.
    pub floor: u64,
    /// The newest id this hub has handed out (`floor - 1` when none yet).
    pub newest: u64,
}

impl LiveHub {
    pub fn new(channel_capacity: usize, replay_capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(channel_capacity);
        let start = id_at_ms(crate::domain::now_ms());
        Self {
            sender,
            recent: Mutex::new(Recent { last_id: start.saturating_sub(1), floor: start, events: VecDeque::new() }),
            replay_capacity,
        }
    }

    pub fn publish(&self, tenant_id: i64, samples: impl IntoIterator<Item = Sample>) {
        let mut recent = self.recent.lock().expect("live buffer poisoned");
        let now = id_at_ms(crate::domain::now_ms());
        for sample in samples {
            // The clock, unless a burst (or a clock step back) already used that millisecond.
            let id = now.max(recent.last_id + 1);
            recent.last_id = id;
            let event = Arc::new(LiveEvent { id, tenant_id, sample });
            if recent.events.len() == self.replay_capacity
                && let Some(evicted) = recent.events.pop_front()
            {
                recent.floor = evicted.id + 1;
            }
            recent.events.push_back(event.clone());
            // No subscribers is fine.
            let _ = self.sender.send(event);
        }
    }

    /// A receiver of every event published from now on, and the newest id published before
    /// it: together, a point a client can later resume from without a gap.
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<LiveEvent>>, u64) {
        // Under the lock that `publish` holds, so no event falls between the two.
        let recent = self.recent.lock().expect("live buffer poisoned");
        (self.sender.subscribe(), recent.last_id)
    }

    /// Buffered events after `last_id`, and whether the buffer still reaches back that far.
    pub fn replay_after(&self, last_id: u64) -> Replay {
        let recent = self.recent.lock().expect("live buffer poisoned");
        // Ids are not contiguous (they follow the clock); what counts is whether anything
        // after `last_id` could have been published and not kept.
        let complete = last_id.saturating_add(1) >= recent.floor;
        let skip = recent.events.partition_point(|e| e.id <= last_id);
        Replay {
            events: recent.events.iter().skip(skip).cloned().collect(),
            complete,
            floor: recent.floor,
            newest: recent.last_id,
        }
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
    fn ids_increase_follow_the_clock_and_replay_is_bounded() {
        let before = crate::domain::now_ms();
        let hub = LiveHub::new(16, 3);
        let (mut rx, before_any) = hub.subscribe();
        hub.publish(1, (0..5).map(|i| sample(i as f64)));
        let first = rx.try_recv().unwrap();
        let second = rx.try_recv().unwrap();
        assert!(second.id > first.id && first.id > before_any);
        assert!(ms_of_id(first.id) >= before && ms_of_id(first.id) <= crate::domain::now_ms() + 1);
        let replay = hub.replay_after(first.id);
        assert_eq!(replay.events.len(), 3, "only the last 3 are kept");
        assert!(!replay.complete, "events after first.id were dropped from the buffer");
        assert_eq!(replay.floor, replay.events[0].id);
        let replay = hub.replay_after(second.id + 1);
        assert_eq!(replay.events.len(), 2);
        assert!(replay.complete);
    }

    #[test]
    fn an_id_from_before_this_process_is_incomplete_even_with_an_empty_buffer() {
        let hub = LiveHub::new(16, 100);
        let earlier = id_at_ms(crate::domain::now_ms() - 60_000);
        assert!(!hub.replay_after(earlier).complete, "what was committed before the start is not buffered");
        hub.publish(1, [sample(1.0)]);
        let replay = hub.replay_after(earlier);
        assert!(!replay.complete);
        assert_eq!(replay.events.len(), 1);
        assert!(replay.floor <= replay.events[0].id);
        // A client that saw everything up to the newest id has nothing to catch up on.
        let replay = hub.replay_after(replay.newest);
        assert!(replay.complete && replay.events.is_empty());
    }
}
