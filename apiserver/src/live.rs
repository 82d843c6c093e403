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
//!
//! Only tenants someone watches are fanned out and buffered: a tenant with an open stream, or
//! one whose last stream closed less than `LINGER_MS` ago (a browser reconnects after 1 s and
//! resumes from memory). For the others `publish` does nothing but note, per tenant, that its
//! events from before now are not in the buffer, so a stream resuming later reads that gap from
//! storage (the backfill) as it does for an evicted one. Bulk ingest into a tenant nobody
//! streams then costs the hub no clone, buffer or send of its samples.
//!
//! Ids are counted per tenant: the bits below the millisecond count the tenant's own events in
//! that millisecond, so the gaps between a tenant's ids say nothing of other tenants' traffic.
//! Ids increase within a tenant, not across tenants; the shared buffer's floor is kept on
//! whole milliseconds for the same reason.

use std::collections::{HashMap, VecDeque};
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

/// One event as a stream sends it: a sample and its id.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// Increasing within the tenant, and time-based; the SSE `id:`.
    pub id: u64,
    pub tenant_id: i64,
    pub sample: Sample,
}

/// Consecutive events of one tenant, published together: the hub allocates, sends and frees
/// one of these per `BATCH` samples, not an event each (that was ~12 % of the server's time
/// under bulk ingest, on the writer's serial path).
#[derive(Debug)]
pub struct LiveBatch {
    /// The id of `samples[0]`; sample `i` has `first_id + i`.
    pub first_id: u64,
    pub tenant_id: i64,
    pub samples: Vec<Sample>,
}

impl LiveBatch {
    pub fn events(&self) -> impl Iterator<Item = (u64, &Sample)> {
        self.samples.iter().enumerate().map(|(i, sample)| (self.first_id + i as u64, sample))
    }

    pub fn last_id(&self) -> u64 {
        self.first_id + self.samples.len() as u64 - 1
    }
}

/// The most samples in one `LiveBatch`: the channel's memory is bounded by its capacity times
/// this, and a batch is what a lagging subscriber misses at least.
pub const BATCH: usize = 64;

pub struct LiveHub {
    sender: broadcast::Sender<Arc<LiveBatch>>,
    recent: Arc<Mutex<Recent>>,
    replay_capacity: usize,
}

struct Recent {
    /// The last id handed out (or promised as a resume point) per tenant; a tenant whose last
    /// id is behind the clock needs no entry (its next id is the clock's) and is pruned.
    last_ids: HashMap<i64, u64>,
    /// Every event with an id ≥ this is in `batches` (or was published after them): ids below
    /// it were published before this process started, or evicted. A whole millisecond (the
    /// first id of one), so it tells nothing of any tenant's count within a millisecond.
    floor: u64,
    /// Each with the count of its first samples already evicted.
    batches: VecDeque<(Arc<LiveBatch>, usize)>,
    /// Samples in `batches`, not counting the evicted ones.
    buffered: usize,
    /// Tenants with an open stream, or whose last one closed within `LINGER_MS`.
    watches: HashMap<i64, Watch>,
    /// Per tenant not watched when it published: its events below this id are not in the
    /// buffer (it is the tenant's own floor, above `floor`).
    unwatched_floors: HashMap<i64, u64>,
}

/// What the buffer holds for a stream resuming after an id.
pub struct Replay {
    /// Buffered events after the id, oldest first.
    pub events: Vec<LiveEvent>,
    /// False when events after the id may be missing from the buffer (evicted, or published
    /// before this process started): the stream must read the gap before `floor` elsewhere.
    pub complete: bool,
    /// The buffer holds every event from this id on.
    pub floor: u64,
    /// The newest id this hub has handed out to the tenant, or one below the clock's when its
    /// last is older: every id it hands the tenant from now on is greater.
    pub newest: u64,
}

/// Tenants' last ids kept before stale ones are pruned (a bound on memory, not a limit).
const PRUNE_ABOVE: usize = 1_024;

/// How long a tenant's events are still fanned out and buffered after its last stream closed:
/// a client that reconnects within it resumes from the buffer, a later one from storage.
pub const LINGER_MS: i64 = 60_000;

/// A tenant's streams, for telling whether anyone watches it.
#[derive(Debug, Clone, Copy)]
struct Watch {
    open: usize,
    /// When the last one closed (Unix ms), while `open` is 0.
    closed_at_ms: i64,
}

impl Recent {
    /// Greater than every id the tenant has been given, and below every id it will be given.
    fn newest(&mut self, tenant_id: i64, now: u64) -> u64 {
        let newest = self.last_ids.get(&tenant_id).copied().unwrap_or(0).max(now.saturating_sub(1));
        // Promised: the next id is above it even if the clock steps back.
        self.last_ids.insert(tenant_id, newest);
        newest
    }

    /// Evicts the oldest samples until `capacity` are left.
    fn evict_above(&mut self, capacity: usize) {
        while self.buffered > capacity
            && let Some((batch, evicted)) = self.batches.front_mut()
        {
            let excess = self.buffered - capacity;
            let left = batch.samples.len() - *evicted;
            let (last_evicted, gone) = if excess >= left {
                let last = batch.last_id();
                self.batches.pop_front();
                (last, left)
            } else {
                *evicted += excess;
                (batch.first_id + *evicted as u64 - 1, excess)
            };
            self.buffered -= gone;
            // Past the evicted ids' whole millisecond (ids of different tenants are not in
            // order, so the floor only ever rises).
            self.floor = self.floor.max(id_at_ms(ms_of_id(last_evicted) + 1));
        }
    }

    fn prune(&mut self, now: u64) {
        if self.last_ids.len() > PRUNE_ABOVE {
            self.last_ids.retain(|_, last| *last >= now);
        }
        if self.watches.len() > PRUNE_ABOVE {
            let now_ms = ms_of_id(now);
            self.watches.retain(|_, w| w.open > 0 || now_ms - w.closed_at_ms < LINGER_MS);
        }
        if self.unwatched_floors.len() > PRUNE_ABOVE {
            let floor = self.floor;
            self.unwatched_floors.retain(|_, own| *own > floor);
        }
    }

    fn watched(&self, tenant_id: i64, now_ms: i64) -> bool {
        self.watches.get(&tenant_id).is_some_and(|w| w.open > 0 || now_ms - w.closed_at_ms < LINGER_MS)
    }

    /// Below this id the tenant's events may be missing from the buffer.
    fn floor_of(&self, tenant_id: i64) -> u64 {
        self.unwatched_floors.get(&tenant_id).map_or(self.floor, |own| self.floor.max(*own))
    }
}

/// What `LiveHub::subscribe` gives a stream: held for as long as the stream is open, it keeps
/// the tenant watched.
pub struct Subscription {
    pub receiver: broadcast::Receiver<Arc<LiveBatch>>,
    /// An id of the tenant's at or above every one it was given before and below every one it
    /// will be given.
    pub newest: u64,
    _watch: WatchGuard,
}

/// Counts one open stream of a tenant until dropped.
struct WatchGuard {
    recent: Arc<Mutex<Recent>>,
    tenant_id: i64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        // No panic in a drop (it may run while a panic unwinds): a poisoned lock still counts.
        let mut recent = self.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(watch) = recent.watches.get_mut(&self.tenant_id) {
            watch.open -= 1;
            watch.closed_at_ms = crate::domain::now_ms();
        }
    }
}

impl LiveHub {
    /// `channel_capacity` samples in flight to subscribers (rounded up to whole batches; a
    /// subscriber further behind lags), `replay_capacity` samples kept for resuming streams.
    pub fn new(channel_capacity: usize, replay_capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(channel_capacity.div_ceil(BATCH).max(1));
        let start = id_at_ms(crate::domain::now_ms());
        Self {
            sender,
            recent: Arc::new(Mutex::new(Recent {
                last_ids: HashMap::new(),
                floor: start,
                batches: VecDeque::new(),
                buffered: 0,
                watches: HashMap::new(),
                unwatched_floors: HashMap::new(),
            })),
            replay_capacity,
        }
    }

    /// Fans `samples` out to the tenant's streams and buffers them for resuming ones, if anyone
    /// watches the tenant; the iterator is not consumed otherwise.
    pub fn publish(&self, tenant_id: i64, samples: impl IntoIterator<Item = Sample>) {
        let mut samples = samples.into_iter().peekable();
        if samples.peek().is_none() {
            return;
        }
        let mut recent = self.recent.lock().expect("live buffer poisoned");
        let now_ms = crate::domain::now_ms();
        let now = id_at_ms(now_ms);
        recent.prune(now);
        if !recent.watched(tenant_id, now_ms) {
            // The events not kept count as given the ids below this floor: a stream that saw
            // the tenant's last id (or an earlier one) is told they are missing, and the next
            // ids are above it.
            let last = recent.last_ids.get(&tenant_id).copied().unwrap_or(0);
            let floor = id_at_ms(now_ms + 1).max(last + 2);
            recent.last_ids.insert(tenant_id, floor - 1);
            recent.unwatched_floors.insert(tenant_id, floor);
            return;
        }
        // The clock, unless a burst (or a clock step back) already used that millisecond.
        let mut next = now.max(recent.last_ids.get(&tenant_id).copied().unwrap_or(0) + 1);
        while samples.peek().is_some() {
            let batch: Vec<Sample> = samples.by_ref().take(BATCH).collect();
            let batch = Arc::new(LiveBatch { first_id: next, tenant_id, samples: batch });
            next = batch.last_id() + 1;
            recent.buffered += batch.samples.len();
            recent.batches.push_back((batch.clone(), 0));
            recent.evict_above(self.replay_capacity);
            // No subscribers is fine.
            let _ = self.sender.send(batch);
        }
        recent.last_ids.insert(tenant_id, next - 1);
    }

    /// A receiver of every event published from now on, and an id of `tenant_id`'s at or
    /// above every one it was given before and below every one it will be given: together, a
    /// point a client can later resume from without a gap.
    ///
    /// The tenant is watched while the subscription is held, and for `LINGER_MS` after.
    pub fn subscribe(&self, tenant_id: i64) -> Subscription {
        // Under the lock that `publish` holds, so no event falls between the two.
        let mut recent = self.recent.lock().expect("live buffer poisoned");
        let newest = recent.newest(tenant_id, id_at_ms(crate::domain::now_ms()));
        recent.watches.entry(tenant_id).or_insert(Watch { open: 0, closed_at_ms: 0 }).open += 1;
        let watch = WatchGuard { recent: self.recent.clone(), tenant_id };
        Subscription { receiver: self.sender.subscribe(), newest, _watch: watch }
    }

    /// `tenant_id`'s buffered events after `last_id`, and whether the buffer still reaches
    /// back that far.
    pub fn replay_after(&self, tenant_id: i64, last_id: u64) -> Replay {
        let mut recent = self.recent.lock().expect("live buffer poisoned");
        // Ids are not contiguous (they follow the clock); what counts is whether anything
        // after `last_id` could have been published and not kept.
        let floor = recent.floor_of(tenant_id);
        let complete = last_id.saturating_add(1) >= floor;
        let events = recent
            .batches
            .iter()
            .filter(|(batch, _)| batch.tenant_id == tenant_id && batch.last_id() > last_id)
            .flat_map(|(batch, evicted)| batch.events().skip(*evicted))
            .filter(|(id, _)| *id > last_id)
            .map(|(id, sample)| LiveEvent { id, tenant_id, sample: sample.clone() })
            .collect();
        let newest = recent.newest(tenant_id, id_at_ms(crate::domain::now_ms()));
        Replay { events, complete, floor, newest }
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

    /// Every event the receiver holds, batches taken apart.
    fn received(rx: &mut broadcast::Receiver<Arc<LiveBatch>>) -> Vec<LiveEvent> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .flat_map(|batch| {
                batch
                    .events()
                    .map(|(id, sample)| LiveEvent { id, tenant_id: batch.tenant_id, sample: sample.clone() })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn sample(v: f64) -> Sample {
        Sample { metric: "m".into(), labels: Default::default(), ts: 1, value: v, dedupe_id: None }
    }

    #[test]
    fn ids_increase_follow_the_clock_and_replay_is_bounded() {
        let before = crate::domain::now_ms();
        let hub = LiveHub::new(16, 3);
        let mut sub = hub.subscribe(1);
        let (rx, before_any) = (&mut sub.receiver, sub.newest);
        hub.publish(1, (0..5).map(|i| sample(i as f64)));
        let events = received(rx);
        let (first, second) = (&events[0], &events[1]);
        assert!(second.id > first.id && first.id > before_any);
        assert!(ms_of_id(first.id) >= before && ms_of_id(first.id) <= crate::domain::now_ms() + 1);
        let replay = hub.replay_after(1, first.id);
        assert_eq!(replay.events.len(), 3, "only the last 3 are kept");
        assert!(!replay.complete, "events after first.id were dropped from the buffer");
        assert!(replay.floor > second.id && replay.floor.is_multiple_of(1 << ID_SUBMS_BITS), "a whole millisecond");
        assert!(replay.events.iter().all(|e| e.id > second.id));
        let replay = hub.replay_after(1, replay.floor - 1);
        assert!(replay.complete);
    }

    /// A tenant's ids count its own events only: what other tenants publish in between leaves
    /// no gap, and neither the resume point nor the replay shows anything of theirs.
    #[test]
    fn ids_are_counted_per_tenant() {
        let hub = LiveHub::new(1_024, 1_000);
        let mut sub = hub.subscribe(1);
        let (rx, start) = (&mut sub.receiver, sub.newest);
        // Within one millisecond (or a few): tenant 1, then 300 of tenant 2's, then tenant 1.
        hub.publish(1, [sample(1.0)]);
        let _watching_2 = hub.subscribe(2);
        hub.publish(2, (0..300).map(|i| sample(i as f64)));
        hub.publish(1, [sample(2.0)]);
        let mine: Vec<u64> = received(rx).into_iter().filter(|e| e.tenant_id == 1).map(|e| e.id).collect();
        assert_eq!(mine.len(), 2);
        let (a, b) = (mine[0], mine[1]);
        assert!(b > a && a > start);
        if ms_of_id(a) == ms_of_id(b) {
            assert_eq!(b - a, 1, "tenant 2's 300 events show in tenant 1's ids");
        }
        // The clock may tick during the call: the resume point is the clock's from some
        // moment inside it, or `b` when that is greater.
        let before = id_at_ms(crate::domain::now_ms());
        let replay = hub.replay_after(1, start);
        let after = id_at_ms(crate::domain::now_ms());
        assert_eq!(replay.events.iter().map(|e| e.id).collect::<Vec<_>>(), vec![a, b], "only its own events");
        assert!(
            (b.max(before - 1)..=b.max(after - 1)).contains(&replay.newest),
            "newest {} is not max(b = {b}, clock - 1) for a clock in [{before}, {after}]",
            replay.newest
        );
        // The next resume point is above what it got, and the next id above that.
        let point = hub.subscribe(1).newest;
        assert!(point >= b);
        hub.publish(1, [sample(3.0)]);
        assert!(hub.replay_after(1, point).events[0].id > point);
    }

    /// A large publish goes out in batches of at most `BATCH`, ids consecutive across them,
    /// and the replay buffer evicts samples, not whole batches.
    #[test]
    fn a_large_publish_goes_out_in_batches_with_consecutive_ids() {
        let hub = LiveHub::new(1_000, 100);
        let mut sub = hub.subscribe(1);
        let (rx, start) = (&mut sub.receiver, sub.newest);
        hub.publish(1, (0..150).map(|i| sample(i as f64)));
        let batches: Vec<Arc<LiveBatch>> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(batches.iter().map(|b| b.samples.len()).collect::<Vec<_>>(), vec![BATCH, BATCH, 150 - 2 * BATCH]);
        let ids: Vec<u64> = batches.iter().flat_map(|b| b.events().map(|(id, _)| id)).collect();
        assert!(ids[0] > start && ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
        let values: Vec<f64> = batches.iter().flat_map(|b| b.samples.iter().map(|s| s.value)).collect();
        assert_eq!(values, (0..150).map(f64::from).collect::<Vec<_>>());
        let replay = hub.replay_after(1, start);
        assert_eq!(replay.events.len(), 100, "the buffer holds its capacity in samples");
        assert_eq!(replay.events[0].sample.value, 50.0);
        assert_eq!(replay.events[0].id, ids[50]);
        assert!(!replay.complete, "50 samples after `start` were evicted");
        // The next publish goes on above them (from the clock, if it moved on meanwhile).
        hub.publish(1, [sample(150.0)]);
        assert!(received(rx)[0].id > ids[149]);
    }

    /// The channel's capacity counts samples (in whole batches): a subscriber that reads
    /// nothing while more are published lags, and is told how many batches it missed.
    #[test]
    fn a_subscriber_that_does_not_read_lags() {
        let hub = LiveHub::new(2 * BATCH, 10);
        let mut sub = hub.subscribe(1);
        hub.publish(1, (0..3 * BATCH).map(|i| sample(i as f64)));
        assert_eq!(sub.receiver.try_recv().unwrap_err(), broadcast::error::TryRecvError::Lagged(1));
        assert_eq!(received(&mut sub.receiver).len(), 2 * BATCH, "the newest two batches are still there");
    }

    #[test]
    fn an_id_from_before_this_process_is_incomplete_even_with_an_empty_buffer() {
        let hub = LiveHub::new(16, 100);
        let earlier = id_at_ms(crate::domain::now_ms() - 60_000);
        assert!(!hub.replay_after(1, earlier).complete, "what was committed before the start is not buffered");
        let _watching = hub.subscribe(1);
        hub.publish(1, [sample(1.0)]);
        let replay = hub.replay_after(1, earlier);
        assert!(!replay.complete);
        assert_eq!(replay.events.len(), 1);
        assert!(replay.floor <= replay.events[0].id);
        // A client that saw everything up to the newest id has nothing to catch up on.
        let replay = hub.replay_after(1, replay.newest);
        assert!(replay.complete && replay.events.is_empty());
    }

    /// A tenant nobody streams is neither sent nor buffered; a stream that resumes from before
    /// is told its events are not all in the buffer (it reads them from storage). Streams keep
    /// their tenant watched while open and for `LINGER_MS` after the last one closed.
    #[test]
    fn only_watched_tenants_are_sent_and_buffered() {
        let hub = LiveHub::new(1_024, 1_000);
        let mut other = hub.subscribe(2);
        let before = hub.replay_after(1, 0).newest;
        hub.publish(1, (0..10).map(|i| sample(i as f64)));
        assert!(received(&mut other.receiver).is_empty(), "nobody watches tenant 1: nothing is sent");
        let replay = hub.replay_after(1, before);
        assert!(replay.events.is_empty(), "nor buffered");
        assert!(!replay.complete, "a resume from before them must read them from storage");
        assert!(replay.floor > before && replay.floor.is_multiple_of(1 << ID_SUBMS_BITS));
        // Another tenant's buffer is whole all the same.
        hub.publish(2, [sample(1.0)]);
        assert!(hub.replay_after(2, other.newest).complete);

        // Watched: sent and buffered, each stream of the tenant counted.
        let first = hub.subscribe(1);
        let second = hub.subscribe(1);
        drop(first);
        hub.publish(1, [sample(10.0)]);
        let replay = hub.replay_after(1, second.newest);
        assert_eq!(replay.events.len(), 1, "one stream of two closed: still watched");
        assert!(replay.complete);
        let after = replay.events[0].id;
        drop(second);
        hub.publish(1, [sample(11.0)]);
        assert_eq!(hub.replay_after(1, after).events.len(), 1, "within LINGER_MS of the last close");

        // Once the linger is over, nothing more is kept, and a resume is told so.
        hub.recent.lock().unwrap().watches.get_mut(&1).unwrap().closed_at_ms -= LINGER_MS;
        let last = hub.replay_after(1, 0).newest;
        hub.publish(1, [sample(12.0)]);
        let replay = hub.replay_after(1, last);
        assert!(
            replay.events.is_empty() && !replay.complete,
            "{} events, complete {}, last {last}, floor {}",
            replay.events.len(),
            replay.complete,
            replay.floor
        );
        // The stream that backfilled up to the floor misses nothing after it.
        let back = hub.subscribe(1);
        hub.publish(1, [sample(13.0)]);
        let replay = hub.replay_after(1, replay.floor - 1);
        assert!(replay.complete);
        assert_eq!(replay.events.iter().map(|e| e.sample.value).collect::<Vec<_>>(), vec![13.0]);
        drop(back);
    }

    #[test]
    fn forgotten_watches_and_floors_are_pruned() {
        let hub = LiveHub::new(16, 16);
        for tenant in 0..=PRUNE_ABOVE as i64 {
            drop(hub.subscribe(tenant));
            hub.publish(10_000 + tenant, [sample(1.0)]);
        }
        {
            let mut recent = hub.recent.lock().unwrap();
            for watch in recent.watches.values_mut() {
                watch.closed_at_ms -= LINGER_MS;
            }
            recent.floor = u64::MAX;
        }
        let _open = hub.subscribe(1);
        hub.publish(1, [sample(1.0)]);
        let recent = hub.recent.lock().unwrap();
        assert_eq!(recent.watches.keys().collect::<Vec<_>>(), vec![&1], "only the open one is left");
        assert!(recent.unwatched_floors.is_empty(), "the buffer's floor is above all of them");
    }
}
