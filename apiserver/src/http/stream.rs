//! `GET /api/v1/stream`: committed samples of the caller's tenant as Server-Sent Events.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use microdash_model::Scope;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::domain::{Labels, Sample};
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::AppResult;
use crate::http::params::Params;
use crate::live::LiveEvent;
use crate::storage::labels_match;

struct Filter {
    tenant_id: i64,
    metrics: HashSet<String>,
    matchers: Labels,
}

impl Filter {
    fn accepts(&self, event: &LiveEvent) -> bool {
        event.tenant_id == self.tenant_id
            && (self.metrics.is_empty() || self.metrics.contains(&event.sample.metric))
            && labels_match(&event.sample.labels, &self.matchers)
    }
}

#[derive(Serialize)]
struct SampleEvent<'a> {
    metric: &'a str,
    labels: &'a Labels,
    ts: i64,
    value: f64,
}

fn to_event(event: &LiveEvent) -> Event {
    let Sample { metric, labels, ts, value, .. } = &event.sample;
    Event::default()
        .event("sample")
        .id(event.id.to_string())
        .json_data(SampleEvent { metric, labels, ts: *ts, value: *value })
        .expect("sample serializes")
}

#[utoipa::path(get, path = "/api/v1/stream", tag = "query",
    params(("metric" = Option<Vec<String>>, Query, description = "repeatable; omitted = every metric"),
           ("match" = Option<String>, Query, description = "k=v,k2=v2")),
    responses((status = 200, content_type = "text/event-stream", description = "`event: sample` with `id:`; honours Last-Event-ID")))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> AppResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let tenant = caller.require(Scope::Read)?;
    let params = Params::parse(raw.as_deref())?;
    let filter = Arc::new(Filter {
        tenant_id: tenant.tenant_id,
        metrics: params.all("metric").into_iter().map(str::to_string).collect(),
        matchers: params.matchers()?,
    });
    // Subscribe before replaying so nothing falls between the two.
    let receiver = state.hub.subscribe();
    let last_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let replayed: Vec<Arc<LiveEvent>> = match last_id {
        Some(last) => state.hub.replay_after(last).0.into_iter().filter(|e| filter.accepts(e)).collect(),
        None => Vec::new(),
    };
    let high_water = replayed.last().map(|e| e.id).or(last_id).unwrap_or(0);
    let replay = stream::iter(replayed.into_iter().map(|e| Ok(to_event(&e))));
    let live_filter = filter.clone();
    let live = stream::unfold(receiver, |mut rx| async move {
        match rx.recv().await {
            Ok(event) => Some((Some(event), rx)),
            // A slow client skips what it missed instead of growing a buffer.
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "Slow stream client skipped events.");
                Some((None, rx))
            }
            Err(RecvError::Closed) => None,
        }
    })
    .filter_map(move |event| {
        let filter = live_filter.clone();
        async move {
            match event {
                Some(e) if e.id > high_water && filter.accepts(&e) => Some(Ok(to_event(&e))),
                Some(_) => None,
                None => Some(Ok(Event::default().comment("lagged: some samples were skipped"))),
            }
        }
    });
    // Ask browsers to reconnect after 1 s instead of their default 3 s.
    let retry = stream::once(async { Ok(Event::default().retry(Duration::from_secs(1))) });
    let mut stop = state.shutdown.subscribe();
    let stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    Ok(Sse::new(retry.chain(replay).chain(live).take_until(stopped))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive")))
}
