//! `GET /api/v1/stream`: committed samples of the caller's tenant as Server-Sent Events.
//!
//! A stream that resumes (`Last-Event-ID`) gets, in this order and with increasing ids: the
//! samples it missed that the live buffer no longer holds, read from storage (the backfill);
//! the buffered events after its id; then live events. When the gap is too large to backfill,
//! it gets one `event: reset` instead, meaning "reload your range through the query API".
//! A new stream (no `Last-Event-ID`) starts with `event: ready` whose id is where it starts, so
//! a client that drops before its first sample still resumes without a gap.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use microdash_model::Scope;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::domain::{Labels, Sample};
use crate::fairness::Fairness;
use crate::http::AppState;
use crate::http::auth::{Caller, TenantCaller};
use crate::http::error::{AppError, AppResult};
use crate::http::params::Params;
use crate::live::{LiveHub, Subscription, id_at_ms, ms_of_id};
use crate::storage::{Aggregation, DynStore, PointQuery, Resolution, StoreError, labels_match};

/// The longest gap read from storage; a client away longer reloads its range instead.
const BACKFILL_MAX_MS: i64 = 15 * 60_000;
/// The most samples one backfill sends (and holds in memory at once).
const BACKFILL_MAX_POINTS: usize = 50_000;
/// The gap is read in slices of this width, each sent before the next is read.
const BACKFILL_SLICE_MS: i64 = 5 * 60_000;
/// A sample's `ts` is usually a little before its commit (the time in its event id): look this
/// much further back so that none committed after the client's last id is missed. Some that it
/// already has may come again; a repeated (series, ts) is the same point.
const BACKFILL_SKEW_MS: i64 = 5_000;
/// Events waiting for a slow client, per stream.
const STREAM_QUEUE: usize = 256;

struct Filter {
    tenant_id: i64,
    metrics: BTreeSet<String>,
    matchers: Labels,
}

impl Filter {
    /// A sample of the stream's tenant (checked once per batch).
    fn accepts(&self, sample: &Sample) -> bool {
        (self.metrics.is_empty() || self.metrics.contains(&*sample.metric))
            && labels_match(&sample.labels, &self.matchers)
    }
}

#[derive(Serialize)]
struct SampleEvent<'a> {
    metric: &'a str,
    labels: &'a Labels,
    ts: i64,
    value: f64,
}

fn sample_event(id: u64, metric: &str, labels: &Labels, ts: i64, value: f64) -> Event {
    Event::default()
        .event("sample")
        .id(id.to_string())
        .json_data(SampleEvent { metric, labels, ts, value })
        .expect("sample serializes")
}

fn to_event(id: u64, sample: &Sample) -> Event {
    let Sample { metric, labels, ts, value, .. } = sample;
    sample_event(id, metric, labels, *ts, *value)
}

/// `event: reset`: what the client holds has a hole the stream cannot fill; reload the range.
fn reset_event(id: Option<u64>, reason: &str) -> Event {
    let event = Event::default().event("reset").data(reason);
    match id {
        Some(id) => event.id(id.to_string()),
        None => event,
    }
}

#[utoipa::path(get, path = "/api/v1/stream", tag = "query",
    params(("metric" = Option<Vec<String>>, Query, description = "repeatable; omitted = every metric"),
           ("match" = Option<String>, Query, description = "k=v,k2=v2"),
           ("last_event_id" = Option<u64>, Query, description = "resume after this id, for clients that cannot send the Last-Event-ID header (the header wins)")),
    responses((status = 200, content_type = "text/event-stream", description = "`event: sample` with `id:`; honours Last-Event-ID: missed samples come first (from the replay buffer, or read from storage for gaps up to 15 minutes and 50 000 samples); a larger gap, or a client too slow to keep up, gets `event: reset` (reload the range through /api/v1/query)")))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> AppResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let tenant = caller.require(Scope::Read)?;
    let params = Params::parse(raw.as_deref())?;
    // The same rule as /query: a name no sample can have is a mistake, not an empty stream.
    if let Some(bad) = params.all("metric").into_iter().find(|m| !crate::domain::sample::is_valid_name(m)) {
        return Err(
            AppError::bad_request(format!("metric {bad:?} must match [a-zA-Z_][a-zA-Z0-9_.:-]*")).field("metric")
        );
    }
    let filter = Filter {
        tenant_id: tenant.tenant_id,
        metrics: params.all("metric").into_iter().map(str::to_string).collect(),
        matchers: params.matchers()?,
    };
    // The query parameter is the client's own choice and must be an id; the header is what a
    // browser echoes from the stream, so an unreadable one is ignored (a fresh start).
    let from_query = match params.get("last_event_id") {
        None => None,
        Some(text) => Some(text.trim().parse::<u64>().map_err(|_| {
            AppError::bad_request(format!("last_event_id {text:?} must be an event id (an integer)"))
                .field("last_event_id")
        })?),
    };
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(from_query);
    // Held by the response: the tenant's count of open streams drops when it ends.
    let permit = stream_permit(&state, &tenant)?;
    // Subscribe before looking at the buffer so nothing falls between the two. Held by the
    // feed: while it is, the tenant's events are fanned out and buffered.
    let subscription = state.hub.subscribe(tenant.tenant_id);
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let sources = Sources { store: state.store.clone(), hub: state.hub.clone(), fairness: state.fairness.clone() };
    tokio::spawn(feed(sources, filter, last_id, subscription, tx));

    let events =
        stream::unfold((rx, permit), |(mut rx, permit)| async move { rx.recv().await.map(|e| (Ok(e), (rx, permit))) });
    // Ask browsers to reconnect after 1 s instead of their default 3 s.
    let retry = stream::once(async { Ok(Event::default().retry(Duration::from_secs(1))) });
    let mut stop = state.shutdown.subscribe();
    // The stream ends when the server stops, and at once when the caller's token is revoked
    // or expires or its tenant is deleted.
    let revoked = caller.until_revoked(&state.auth);
    let stopped = async move {
        let stopping = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        tokio::select! {
            _ = stopping => {}
            _ = revoked => {}
        }
    };
    Ok(Sse::new(retry.chain(events).take_until(stopped)).keep_alive(keep_alive()))
}

/// How often an idle stream sends a comment: well inside the idle timeouts of the proxies in
/// front of it (nginx's `proxy_read_timeout` 60 s, haproxy's `timeout server` 50 s in Debian's
/// configuration, most load balancers 60 s), so none of them closes a quiet stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The keep-alive comment of every event stream of the API (the proxy headers are added to
/// every event stream by `http::event_streams_through_proxies`).
pub fn keep_alive() -> KeepAlive {
    KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")
}

/// One of the tenant's `max_streams_per_tenant` streams, or 429 naming the limit.
pub fn stream_permit(state: &AppState, tenant: &TenantCaller) -> AppResult<OwnedSemaphorePermit> {
    state.fairness.streams.try_take(tenant.tenant_id, 1).ok_or_else(|| {
        AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "tenant {:?} has {} live streams open, its limit (max_streams_per_tenant); close one or retry later",
                tenant.tenant,
                state.fairness.streams.capacity()
            ),
        )
        .retry_after(5)
        .limit("streams", None, None)
    })
}

/// Where a stream's events come from.
struct Sources {
    store: DynStore,
    hub: Arc<LiveHub>,
    fairness: Arc<Fairness>,
}

/// Writes one stream's events into `tx` until the client goes away: the catch-up after
/// `last_id` (backfill, then buffer), then live events. `tx` is bounded, so a slow client
/// slows this task, never grows a buffer; the live channel then lags and the client gets a reset.
async fn feed(
    Sources { store, hub, fairness }: Sources,
    filter: Filter,
    last_id: Option<u64>,
    mut subscription: Subscription,
    tx: mpsc::Sender<Event>,
) {
    let newest = subscription.newest;
    // Live events at or below this id were sent already (or covered by a reset).
    let mut high_water = 0;
    if last_id.is_none() {
        // A new client has no id to resume from until its first sample, and a quiet metric may
        // not bring one for long: give it the point this stream starts at.
        let ready = Event::default().event("ready").id(newest.to_string()).data("{}");
        if tx.send(ready).await.is_err() {
            return;
        }
    }
    if let Some(last) = last_id {
        let replay = hub.replay_after(filter.tenant_id, last);
        // An id this hub has not handed out yet (another API process, a clock ahead): what
        // this hub publishes from now on is new to the client all the same.
        high_water = last.min(replay.newest);
        let mut gap_filled = true;
        if !replay.complete {
            let outcome = backfill(&store, &fairness, &filter, last, replay.floor, &tx).await;
            match outcome {
                // Storage covered everything before the buffer's floor.
                Ok(Backfill::Sent) => high_water = high_water.max(replay.floor - 1),
                Ok(Backfill::ClientGone) => return,
                Ok(Backfill::TooLarge(reason)) => {
                    gap_filled = false;
                    tracing::debug!(tenant = filter.tenant_id, %reason, "Stream resumes with a reset.");
                    // The client reloads everything up to now: buffered events need not follow.
                    high_water = replay.floor - 1;
                    if tx.send(reset_event(Some(high_water), &reason)).await.is_err() {
                        return;
                    }
                }
                Err(err) => {
                    gap_filled = false;
                    tracing::warn!(tenant = filter.tenant_id, %err, "Reading a stream's gap from storage failed; sending a reset.");
                    high_water = replay.floor - 1;
                    if tx.send(reset_event(Some(high_water), "the missed samples could not be read")).await.is_err() {
                        return;
                    }
                }
            }
        }
        if gap_filled {
            // After a backfill, what it covered (before the floor) is not sent twice.
            let after = high_water;
            for event in replay.events.iter().filter(|e| e.id > after && filter.accepts(&e.sample)) {
                if tx.send(to_event(event.id, &event.sample)).await.is_err() {
                    return;
                }
                high_water = event.id;
            }
        }
    }
    loop {
        let batch = tokio::select! {
            _ = tx.closed() => return,
            received = subscription.receiver.recv() => match received {
                Ok(batch) if batch.tenant_id == filter.tenant_id && batch.last_id() > high_water => batch,
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "Slow stream client skipped events; sending a reset.");
                    // No id: a reconnect resumes after the last event the client did get.
                    let reset = reset_event(None, "lagged: the client fell behind and some samples were skipped");
                    if tx.send(reset).await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
        };
        for (id, sample) in batch.events().filter(|(id, sample)| *id > high_water && filter.accepts(sample)) {
            if tx.send(to_event(id, sample)).await.is_err() {
                return;
            }
        }
    }
}

enum Backfill {
    Sent,
    ClientGone,
    /// The gap cannot be filled from storage; the reason goes to the client.
    TooLarge(String),
}

/// Sends the tenant's samples that match `filter`, committed after event `after_id` and before
/// event `floor` (where the buffer starts), read from raw storage by timestamp, in time order,
/// with ids in `(after_id, floor - 1)`.
async fn backfill(
    store: &DynStore,
    fairness: &Fairness,
    filter: &Filter,
    after_id: u64,
    floor: u64,
    tx: &mpsc::Sender<Event>,
) -> Result<Backfill, StoreError> {
    let (after_ms, until_ms) = (ms_of_id(after_id), ms_of_id(floor));
    if until_ms - after_ms > BACKFILL_MAX_MS {
        return Ok(Backfill::TooLarge(format!(
            "the stream was away for {} s; up to {} s are caught up from storage",
            (until_ms - after_ms) / 1000,
            BACKFILL_MAX_MS / 1000
        )));
    }
    let metrics: Vec<String> = if filter.metrics.is_empty() {
        store.metric_names(filter.tenant_id).await?
    } else {
        filter.metrics.iter().cloned().collect()
    };
    let too_many =
        || Backfill::TooLarge(format!("more than {BACKFILL_MAX_POINTS} samples were missed; too many to catch up"));
    let mut budget = BACKFILL_MAX_POINTS;
    let mut next_id = after_id + 1;
    // `floor - 1` stays free for a reset.
    let last_free_id = floor - 2;
    let mut from = after_ms - BACKFILL_SKEW_MS;
    while from <= until_ms {
        let to = (from + BACKFILL_SLICE_MS - 1).min(until_ms);
        // (ts, series index, value): the series' labels sit once in `series`.
        let mut points: Vec<(i64, usize, f64)> = Vec::new();
        let mut series: Vec<(usize, Labels)> = Vec::new();
        // Storage is read under one of the tenant's and one of the server's slots, which go
        // back before the slice is sent: a client that does not read holds up only itself.
        let tenant_slot = fairness.backfill_per_tenant.take(filter.tenant_id, 1).await;
        let slot = fairness.backfill.acquire().await.expect("never closed");
        for (m, metric) in metrics.iter().enumerate() {
            let query = PointQuery {
                tenant_id: filter.tenant_id,
                metric: metric.clone(),
                matchers: filter.matchers.clone(),
                from,
                to,
                step: None,
                resolution: Resolution::Raw,
                agg: Aggregation::Last,
                max_points: budget,
                last_sample_times: false,
            };
            let found = match store.query(&query).await {
                Err(StoreError::TooManyPoints(_)) => return Ok(too_many()),
                found => found?,
            };
            for s in found {
                budget -= s.points.len().min(budget);
                let index = series.len();
                points.extend(s.points.iter().map(|&(ts, value)| (ts, index, value)));
                series.push((m, s.labels));
            }
        }
        drop((slot, tenant_slot));
        // Stable: samples of one ts keep the metric and series order.
        points.sort_by_key(|&(ts, _, _)| ts);
        for (ts, index, value) in points {
            let id = next_id.max(id_at_ms(ts).min(last_free_id));
            if id > last_free_id {
                return Ok(too_many());
            }
            next_id = id + 1;
            let (m, labels) = &series[index];
            if tx.send(sample_event(id, &metrics[*m], labels, ts, value)).await.is_err() {
                return Ok(Backfill::ClientGone);
            }
        }
        from = to + 1;
    }
    Ok(Backfill::Sent)
}
