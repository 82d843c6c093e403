//! The public status pages (docs/status-pages.md): `/status/{slug}` (HTML), `/status/{slug}.json`,
//! `/status/{slug}/badge/{component}.svg` and `/status/{slug}/stream` (SSE), read without a
//! token. They show what the tenant chose and nothing else: the title, the components' names,
//! their status (from the chosen rules' instances), 90 daily bars and the incidents of the last
//! 90 days (from the rules' transitions), never a tenant, token, rule, metric, label or value.
//!
//! They are unauthenticated, so their cost is bounded: a page is computed at most once per
//! `CACHE_TTL` (and after a transition of one of its rules), at most `COMPUTING` at once, and at
//! most `PUBLIC_STREAMS` live streams are open across all pages.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Semaphore, broadcast};
use utoipa::ToSchema;

use crate::alerting::engine::AlertEvent;
use crate::domain::alerting::AlertState;
use crate::http::AppState;
use crate::http::error::{AppError, AppResult, OwnErrorShape};
use crate::storage::alerts::{SpecKind, TransitionRecord};
use crate::storage::status_pages::StatusPageRecord;
use crate::storage::{DynStore, StoreError};

/// How long a computed page is served before it is computed again (a transition of one of its
/// rules in this process computes it again at once).
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// `Cache-Control` of the public answers.
pub const CACHE_CONTROL: &str = "public, max-age=10";
/// Daily bars per component.
pub const HISTORY_DAYS: i64 = 90;
/// Incidents shown, newest first.
pub const MAX_INCIDENTS: usize = 20;
/// Pages computed at once, across all pages (each reads the database a few times).
const COMPUTING: usize = 4;
/// Public live streams open at once, across all pages.
pub const PUBLIC_STREAMS: usize = 512;
/// Transitions read per component for the history: older ones than the newest this many are
/// not shown (a rule that flaps more than that in 90 days shows its last ones).
const MAX_TRANSITIONS: i64 = 5_000;
/// Pages kept in the cache before expired ones are dropped.
const CACHE_ENTRIES: usize = 1_000;
const DAY_MS: i64 = 86_400_000;

/// A component's status on a public page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ComponentStatus {
    Operational,
    Degraded,
    Down,
}

impl ComponentStatus {
    /// An instance's state as a component status: FIRING is `down` for a rule of severity
    /// `critical` and `degraded` for any other severity (the default is `warning`); NODATA is
    /// `degraded`; OK, PENDING and RESOLVED are `operational`.
    pub fn of(state: AlertState, critical: bool) -> Self {
        match state {
            AlertState::Firing if critical => ComponentStatus::Down,
            AlertState::Firing | AlertState::NoData => ComponentStatus::Degraded,
            AlertState::Ok | AlertState::Pending | AlertState::Resolved => ComponentStatus::Operational,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "operational",
            ComponentStatus::Degraded => "degraded",
            ComponentStatus::Down => "down",
        }
    }

    fn label(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "Operational",
            ComponentStatus::Degraded => "Degraded",
            ComponentStatus::Down => "Down",
        }
    }

    fn headline(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "All systems operational",
            ComponentStatus::Degraded => "Some systems degraded",
            ComponentStatus::Down => "Outage",
        }
    }

    fn color(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "#1f883d",
            ComponentStatus::Degraded => "#bf8700",
            ComponentStatus::Down => "#cf222e",
        }
    }
}

/// A component as the tenant chose it (the stored JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ComponentSpec {
    /// Shown on the page, 1 to 60 characters, unique within the page.
    pub name: String,
    /// The alert rule (of the page's tenant) whose instances give the status; never shown publicly.
    pub rule: String,
}

/// One UTC day of a component's history.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DayStatus {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// The worst status of the day; null before the component's rule existed.
    pub status: Option<ComponentStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PublicComponent {
    pub name: String,
    pub status: ComponentStatus,
    /// The last 90 UTC days, oldest first; the last is today.
    pub history: Vec<DayStatus>,
}

/// A time a component was not operational.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Incident {
    pub component: String,
    /// The worst status during the incident.
    pub status: ComponentStatus,
    /// Unix milliseconds.
    pub started_at: i64,
    /// Unix milliseconds; null while it lasts.
    pub resolved_at: Option<i64>,
}

/// `GET /status/{slug}.json`: everything the public page shows.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PublicPage {
    pub title: String,
    /// The worst status of the components.
    pub status: ComponentStatus,
    pub components: Vec<PublicComponent>,
    /// Of the last 90 days, newest first, at most 20.
    pub incidents: Vec<Incident>,
}

/// A computed page, as the public answers serve it.
pub struct Computed {
    tenant_id: i64,
    rules: Vec<String>,
    pub page: PublicPage,
    json: String,
    etag: String,
    at: Instant,
}

/// The public pages' shared state: the cache of computed pages and the bounds.
pub struct PublicPages {
    cache: Mutex<HashMap<String, Arc<Computed>>>,
    computing: Semaphore,
    pub streams: Arc<Semaphore>,
}

impl Default for PublicPages {
    fn default() -> Self {
        Self {
            cache: Mutex::new(HashMap::new()),
            computing: Semaphore::new(COMPUTING),
            streams: Arc::new(Semaphore::new(PUBLIC_STREAMS)),
        }
    }
}

impl PublicPages {
    /// Forgets the page `slug`, so the next request computes it (after an edit or a transition).
    pub fn invalidate(&self, slug: &str) {
        self.cache.lock().expect("status cache poisoned").remove(slug);
    }

    /// Forgets the pages of a deleted tenant (other processes' caches expire within `CACHE_TTL`).
    pub fn forget_tenant(&self, tenant_id: i64) {
        self.cache.lock().expect("status cache poisoned").retain(|_, c| c.tenant_id != tenant_id);
    }

    fn fresh(&self, slug: &str) -> Option<Arc<Computed>> {
        let cache = self.cache.lock().expect("status cache poisoned");
        cache.get(slug).filter(|c| c.at.elapsed() < CACHE_TTL).cloned()
    }

    fn keep(&self, slug: &str, computed: Arc<Computed>) {
        let mut cache = self.cache.lock().expect("status cache poisoned");
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, c| c.at.elapsed() < CACHE_TTL);
        }
        if cache.len() < CACHE_ENTRIES {
            cache.insert(slug.to_string(), computed);
        }
    }

    /// The page `slug` from the cache, or computed; `None` when there is no such page.
    pub async fn get(&self, store: &DynStore, slug: &str) -> Result<Option<Arc<Computed>>, StoreError> {
        if let Some(hit) = self.fresh(slug) {
            return Ok(Some(hit));
        }
        let _permit = self.computing.acquire().await.expect("never closed");
        // Another request may have computed it while this one waited.
        if let Some(hit) = self.fresh(slug) {
            return Ok(Some(hit));
        }
        let Some(record) = store.status_page(slug).await? else {
            return Ok(None);
        };
        let at = Instant::now();
        let page = compute(store, &record, crate::domain::now_ms()).await?;
        let json = serde_json::to_string(&page).expect("serializes");
        let etag = {
            use sha2::Digest;
            format!("\"{}\"", hex::encode(&sha2::Sha256::digest(json.as_bytes())[..12]))
        };
        let rules = components_of(&record)?.into_iter().map(|c| c.rule).collect();
        let computed = Arc::new(Computed { tenant_id: record.tenant_id, rules, page, json, etag, at });
        self.keep(slug, computed.clone());
        Ok(Some(computed))
    }
}

pub fn components_of(record: &StatusPageRecord) -> Result<Vec<ComponentSpec>, StoreError> {
    serde_json::from_str(&record.components).map_err(StoreError::corrupt)
}

/// The page as it is at `now` (Unix ms).
pub async fn compute(store: &DynStore, record: &StatusPageRecord, now: i64) -> Result<PublicPage, StoreError> {
    let components = components_of(record)?;
    let rules: HashMap<String, (bool, i64)> = store
        .list_specs(SpecKind::Rule, Some(record.tenant_id))
        .await?
        .into_iter()
        .filter(|r| components.iter().any(|c| c.rule == r.name))
        .map(|r| {
            let critical = serde_json::from_str::<microdash_model::AlertRuleSpec>(&r.spec)
                .is_ok_and(|s| s.severity().eq_ignore_ascii_case("critical"));
            (r.name, (critical, r.created_at))
        })
        .collect();
    let instances = store.list_instances(Some(record.tenant_id)).await?;
    let window_start = now - now.rem_euclid(DAY_MS) - (HISTORY_DAYS - 1) * DAY_MS;
    let mut out = Vec::with_capacity(components.len());
    let mut incidents = Vec::new();
    let mut transitions_of: HashMap<&str, Vec<TransitionRecord>> = HashMap::new();
    for component in &components {
        let Some(&(critical, created_at)) = rules.get(&component.rule) else {
            // The rule was deleted since: nothing tells of trouble, and there is no history.
            out.push(PublicComponent {
                name: component.name.clone(),
                status: ComponentStatus::Operational,
                history: days(&[(window_start, ComponentStatus::Operational)], window_start, now, None),
            });
            continue;
        };
        let current = instances
            .iter()
            .filter(|i| i.rule == component.rule)
            .map(|i| ComponentStatus::of(i.instance.state, critical))
            .max()
            .unwrap_or(ComponentStatus::Operational);
        if !transitions_of.contains_key(component.rule.as_str()) {
            let read = transitions_since(store, record.tenant_id, &component.rule, window_start).await?;
            transitions_of.insert(&component.rule, read);
        }
        let mut line = timeline(&transitions_of[component.rule.as_str()], critical, window_start);
        if line.last().is_some_and(|&(_, s)| s != current) {
            line.push((now, current));
        }
        incidents.extend(incidents_of(&component.name, &line));
        out.push(PublicComponent {
            name: component.name.clone(),
            status: current,
            history: days(&line, window_start, now, Some(created_at)),
        });
    }
    incidents.sort_by(|a, b| b.started_at.cmp(&a.started_at).then_with(|| a.component.cmp(&b.component)));
    incidents.truncate(MAX_INCIDENTS);
    let status = out.iter().map(|c| c.status).max().unwrap_or(ComponentStatus::Operational);
    Ok(PublicPage { title: record.title.clone(), status, components: out, incidents })
}

/// The rule's transitions at or after `since`, oldest first (at most `MAX_TRANSITIONS`).
async fn transitions_since(
    store: &DynStore,
    tenant_id: i64,
    rule: &str,
    since: i64,
) -> Result<Vec<TransitionRecord>, StoreError> {
    let mut out: Vec<TransitionRecord> = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_transitions(tenant_id, Some(rule), before, 1000).await?;
        let short = page.len() < 1000;
        before = page.last().map(|t| t.id);
        let old = page.last().is_some_and(|t| t.at < since);
        out.extend(page.into_iter().filter(|t| t.at >= since));
        if short || old || out.len() as i64 >= MAX_TRANSITIONS {
            break;
        }
    }
    out.reverse();
    Ok(out)
}

/// The component's status over time from its rule's transitions (oldest first): `(from, status)`
/// pairs, the first at `window_start`. Each instance is in its first transition's `from` state
/// before it; the component is its worst instance.
pub fn timeline(transitions: &[TransitionRecord], critical: bool, window_start: i64) -> Vec<(i64, ComponentStatus)> {
    let key = |t: &TransitionRecord| serde_json::to_string(&t.labels).expect("serializes");
    let mut states: BTreeMap<String, AlertState> = BTreeMap::new();
    for t in transitions {
        states.entry(key(t)).or_insert(t.from);
    }
    let worst = |states: &BTreeMap<String, AlertState>| {
        states.values().map(|s| ComponentStatus::of(*s, critical)).max().unwrap_or(ComponentStatus::Operational)
    };
    let mut line = vec![(window_start, worst(&states))];
    for t in transitions {
        states.insert(key(t), t.to);
        let status = worst(&states);
        let last = line.last_mut().expect("never empty");
        if status == last.1 {
            continue;
        }
        if t.at <= last.0 {
            last.1 = status;
        } else {
            line.push((t.at, status));
        }
    }
    line
}

/// The `HISTORY_DAYS` UTC days from `window_start` (a midnight): each day's worst status of
/// the timeline; null for the days before `created_at` (none when `created_at` is `None`).
pub fn days(line: &[(i64, ComponentStatus)], window_start: i64, now: i64, created_at: Option<i64>) -> Vec<DayStatus> {
    (0..HISTORY_DAYS)
        .map(|d| {
            let start = window_start + d * DAY_MS;
            let end = start + DAY_MS;
            let date = chrono::DateTime::from_timestamp_millis(start)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            let status = match created_at {
                Some(created) if created < end => line
                    .iter()
                    .enumerate()
                    .filter(|&(i, &(from, _))| {
                        let until = line.get(i + 1).map_or(now.max(from) + 1, |&(next, _)| next);
                        from < end && until > start.max(created.min(end - 1))
                    })
                    .map(|(_, &(_, s))| s)
                    .max(),
                _ => None,
            };
            DayStatus { date, status }
        })
        .collect()
}

/// The times the component was not operational. One that was already going on at the start of
/// the timeline (the 90 days' first midnight) starts there.
pub fn incidents_of(component: &str, line: &[(i64, ComponentStatus)]) -> Vec<Incident> {
    let mut out: Vec<Incident> = Vec::new();
    let mut open: Option<Incident> = None;
    for &(at, status) in line {
        match (&mut open, status) {
            (None, ComponentStatus::Operational) => {}
            (None, status) => {
                open = Some(Incident { component: component.to_string(), status, started_at: at, resolved_at: None })
            }
            (Some(incident), ComponentStatus::Operational) => {
                incident.resolved_at = Some(at);
                out.extend(open.take());
            }
            (Some(incident), status) => incident.status = incident.status.max(status),
        }
    }
    out.extend(open);
    out
}

/// Slugs: lowercase letters, digits and `-`, 1 to 63 characters, not starting or ending with `-`
/// (a DNS label, as tenant names).
pub fn valid_slug(slug: &str) -> bool {
    microdash_model::validate_tenant_name(slug).is_ok()
}

fn public_headers(response: &mut Response, etag: &str) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// 304 when the client has this version, else `body` with the public headers.
fn answer(headers: &HeaderMap, etag: &str, content_type: &'static str, body: String) -> Response {
    let mut response = if not_modified(headers, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    public_headers(&mut response, etag);
    response
}

async fn lookup(state: &AppState, slug: &str) -> AppResult<Option<Arc<Computed>>> {
    if !valid_slug(slug) {
        return Ok(None);
    }
    Ok(state.status_pages.get(&state.store, slug).await?)
}

fn no_page() -> AppError {
    AppError::not_found("no such status page")
}

/// `GET /status/{slug}` (the HTML page) and `GET /status/{slug}.json`.
pub async fn page(State(state): State<AppState>, Path(file): Path<String>, headers: HeaderMap) -> AppResult<Response> {
    if let Some(slug) = file.strip_suffix(".json") {
        return json(&state, slug, &headers).await;
    }
    let Some(computed) = lookup(&state, &file).await? else {
        let mut response = (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
            NOT_FOUND_HTML,
        )
            .into_response();
        response.extensions_mut().insert(OwnErrorShape);
        return Ok(response);
    };
    let html = render_html(&file, &computed.page);
    Ok(answer(&headers, &computed.etag, "text/html; charset=utf-8", html))
}

#[utoipa::path(get, path = "/status/{slug}.json", tag = "status pages", security(()),
    params(("slug" = String, Path, description = "The page's slug: lowercase letters, digits and '-'")),
    responses((status = 200, body = PublicPage, description = "The public status page (no token needed)"),
              (status = 304, description = "Not modified (If-None-Match)"),
              (status = 404, body = crate::http::error::Problem),
              (status = 503, body = crate::http::error::Problem, description = "The database is unavailable: retry after Retry-After seconds")))]
pub async fn public_json() {}

async fn json(state: &AppState, slug: &str, headers: &HeaderMap) -> AppResult<Response> {
    let computed = lookup(state, slug).await?.ok_or_else(no_page)?;
    let mut response = answer(headers, &computed.etag, "application/json", computed.json.clone());
    // Public data without credentials: any site may read it (widgets, other status pages).
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    Ok(response)
}

/// `GET /status/{slug}/badge/{component}.svg`: the component's status as a badge.
pub async fn badge(
    State(state): State<AppState>,
    Path((slug, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let name = file.strip_suffix(".svg").ok_or_else(|| AppError::not_found("badges are `{component}.svg`"))?;
    let computed = lookup(&state, &slug).await?.ok_or_else(no_page)?;
    let component = computed
        .page
        .components
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| AppError::not_found("no such component on this page"))?;
    let svg = render_badge(&component.name, component.status);
    let etag = format!("\"{}-{}\"", computed.etag.trim_matches('"'), component.status.as_str());
    Ok(answer(&headers, &etag, "image/svg+xml", svg))
}

/// The status of the page's components as Server-Sent Events: `event: status` with the page's
/// JSON (as `/status/{slug}.json`) at once and whenever it changes.
pub async fn stream(State(state): State<AppState>, Path(slug): Path<String>) -> AppResult<Response> {
    let computed = lookup(&state, &slug).await?.ok_or_else(no_page)?;
    let permit = state.status_pages.streams.clone().try_acquire_owned().map_err(|_| {
        AppError::new(StatusCode::TOO_MANY_REQUESTS, "too many status streams are open; retry later").retry_after(5)
    })?;
    let receiver = state.alerting.engine.as_ref().map(|e| e.subscribe());
    // Without an engine in this process nothing announces transitions: look more often.
    let every = if receiver.is_some() { Duration::from_secs(15) } else { Duration::from_secs(5) };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watched = (computed.tenant_id, computed.rules.clone());
    let feed = Feed {
        state: state.clone(),
        slug,
        receiver,
        tick,
        last: None,
        first: Some(computed),
        watched,
        gone: false,
        _permit: permit,
    };
    let events = stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok::<_, Infallible>(event), feed))
    });
    let retry = stream::once(async { Ok(Event::default().retry(Duration::from_secs(2))) });
    let mut stop = state.shutdown.subscribe();
    let stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    Ok(Sse::new(retry.chain(events).take_until(stopped)).keep_alive(crate::http::stream::keep_alive()).into_response())
}

struct Feed {
    state: AppState,
    slug: String,
    receiver: Option<broadcast::Receiver<AlertEvent>>,
    tick: tokio::time::Interval,
    /// The JSON last sent.
    last: Option<String>,
    first: Option<Arc<Computed>>,
    /// The page's tenant and rules, as last computed: whose transitions to watch.
    watched: (i64, Vec<String>),
    /// The page was deleted and `gone` sent: the stream ends.
    gone: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Feed {
    /// The next event to send; `None` ends the stream (after `gone` when the page was deleted).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if self.gone {
                return None;
            }
            let computed = match self.first.take() {
                Some(first) => first,
                None => {
                    self.wait().await;
                    match self.state.status_pages.get(&self.state.store, &self.slug).await {
                        Ok(Some(computed)) => computed,
                        Ok(None) => {
                            self.gone = true;
                            return Some(Event::default().event("gone").data("deleted"));
                        }
                        Err(err) => {
                            tracing::warn!(%err, "A status page could not be computed for its stream.");
                            continue;
                        }
                    }
                }
            };
            self.watched = (computed.tenant_id, computed.rules.clone());
            if self.last.as_deref() != Some(computed.json.as_str()) {
                self.last = Some(computed.json.clone());
                return Some(Event::default().event("status").data(computed.json.clone()));
            }
        }
    }

    /// Until a transition of one of the page's rules (which drops the cached page) or the tick.
    async fn wait(&mut self) {
        let (tenant_id, rules) = self.watched.clone();
        loop {
            let receiver = &mut self.receiver;
            let event = async move {
                match receiver.as_mut() {
                    Some(rx) => Some(rx.recv().await),
                    None => std::future::pending().await,
                }
            };
            let received = tokio::select! {
                _ = self.tick.tick() => return,
                received = event => received,
            };
            match received {
                Some(Ok(e)) if e.tenant_id == tenant_id && rules.contains(&e.rule) => {
                    self.state.status_pages.invalidate(&self.slug);
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(RecvError::Lagged(_))) => {
                    self.state.status_pages.invalidate(&self.slug);
                    return;
                }
                Some(Err(RecvError::Closed)) | None => self.receiver = None,
            }
        }
    }
}

/// The page's script: `GET /status-page.js` (the CSP allows no inline script).
pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=300")],
        include_str!("status_page.js"),
    )
        .into_response()
}

const NOT_FOUND_HTML: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not found</title>\
</head><body style=\"font-family:system-ui,sans-serif;margin:3rem\"><h1>Not found</h1><p>There is no status page \
at this address.</p></body></html>";

/// `<`, `>`, `&`, `"` and `'` as entities: safe in text and in quoted attributes (HTML and SVG).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f6f8fa;color:#1f2328}\
main{max-width:760px;margin:0 auto;padding:2rem 1rem}h1{font-size:1.6rem;margin:0 0 1.2rem}\
h2{font-size:1.1rem;margin:2rem 0 .6rem}.banner{padding:1rem 1.2rem;border-radius:8px;color:#fff;font-weight:600;font-size:1.1rem}\
.banner.operational{background:#1f883d}.banner.degraded{background:#bf8700}.banner.down{background:#cf222e}\
ul{list-style:none;padding:0;margin:0}.component{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:.9rem 1.1rem;margin-top:.8rem}\
.head{display:flex;justify-content:space-between;font-weight:600}.state.operational{color:#1f883d}\
.state.degraded{color:#9a6700}.state.down{color:#cf222e}.bars{display:flex;gap:2px;margin-top:.6rem;height:28px}\
.bar{flex:1;border-radius:2px;background:#d0d7de}.bar.operational{background:#2da44e}.bar.degraded{background:#d4a72c}\
.bar.down{background:#cf222e}.legend{display:flex;justify-content:space-between;color:#656d76;font-size:.8rem;margin-top:.3rem}\
.incident{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:.6rem 1rem;margin-top:.5rem}\
.incident .when{color:#656d76;font-size:.85rem}footer{margin-top:2rem;color:#656d76;font-size:.85rem}";

/// The page as HTML, which `status_page.js` keeps current from the stream.
pub fn render_html(slug: &str, page: &PublicPage) -> String {
    let title = escape(&page.title);
    let slug = escape(slug);
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title>\
         <style>{STYLE}</style><script src=\"/status-page.js\" defer></script></head>\
         <body data-slug=\"{slug}\"><main><h1>{title}</h1>\
         <div id=\"overall\" class=\"banner {status}\" data-status=\"{status}\">{headline}</div>\
         <ul id=\"components\">",
        status = page.status.as_str(),
        headline = page.status.headline(),
    );
    for c in &page.components {
        html.push_str(&format!(
            "<li class=\"component\" data-component=\"{name}\" data-status=\"{status}\"><div class=\"head\">\
             <span class=\"name\">{name}</span><span class=\"state {status}\">{label}</span></div><div class=\"bars\">",
            name = escape(&c.name),
            status = c.status.as_str(),
            label = c.status.label(),
        ));
        for day in &c.history {
            let (class, text) = day.status.map_or(("none", "no data"), |s| (s.as_str(), s.as_str()));
            html.push_str(&format!("<span class=\"bar {class}\" title=\"{}: {text}\"></span>", day.date));
        }
        html.push_str(&format!(
            "</div><div class=\"legend\"><span>{HISTORY_DAYS} days ago</span><span>Today</span></div></li>"
        ));
    }
    html.push_str("</ul><h2>Recent incidents</h2><ul id=\"incidents\">");
    if page.incidents.is_empty() {
        html.push_str(&format!("<li class=\"none\">No incidents in the last {HISTORY_DAYS} days.</li>"));
    }
    for i in &page.incidents {
        let until = i.resolved_at.map_or_else(|| "ongoing".to_string(), |at| format!("resolved {}", utc(at)));
        html.push_str(&format!(
            "<li class=\"incident\" data-status=\"{status}\"><strong>{name}</strong> {label}\
             <div class=\"when\">{started} · {until}</div></li>",
            name = escape(&i.component),
            status = i.status.as_str(),
            label = i.status.as_str(),
            started = utc(i.started_at),
        ));
    }
    html.push_str(&format!(
        "</ul><footer><span id=\"live\">Live</span> · <a href=\"/status/{slug}.json\">JSON</a></footer></main></body></html>"
    ));
    html
}

/// A flat badge: the component's name on grey, its status on its colour.
pub fn render_badge(name: &str, status: ComponentStatus) -> String {
    // About 7 px per character of 11 px Verdana, plus padding.
    let width_of = |text: &str| 10 + 7 * text.chars().count() as u32;
    let (left, right) = (width_of(name), width_of(status.as_str()));
    let total = left + right;
    let name = escape(name);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{total}\" height=\"20\" role=\"img\" \
         aria-label=\"{name}: {status}\"><title>{name}: {status}</title>\
         <rect width=\"{left}\" height=\"20\" fill=\"#555\"/><rect x=\"{left}\" width=\"{right}\" height=\"20\" fill=\"{color}\"/>\
         <g fill=\"#fff\" font-family=\"Verdana,DejaVu Sans,sans-serif\" font-size=\"11\" text-anchor=\"middle\">\
         <text x=\"{lx}\" y=\"14\">{name}</text><text x=\"{rx}\" y=\"14\">{status}</text></g></svg>",
        status = status.as_str(),
        color = status.color(),
        lx = left / 2,
        rx = left + right / 2,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Labels;

    fn transition(host: &str, from: AlertState, to: AlertState, at: i64) -> TransitionRecord {
        let labels: Labels = [("host".to_string(), host.to_string())].into();
        TransitionRecord { id: at, rule: "r".into(), labels, from, to, value: Some(1.0), at }
    }

    #[test]
    fn states_map_to_the_three_statuses() {
        assert_eq!(ComponentStatus::of(AlertState::Firing, true), ComponentStatus::Down);
        assert_eq!(ComponentStatus::of(AlertState::Firing, false), ComponentStatus::Degraded);
        assert_eq!(ComponentStatus::of(AlertState::NoData, true), ComponentStatus::Degraded);
        for s in [AlertState::Ok, AlertState::Pending, AlertState::Resolved] {
            assert_eq!(ComponentStatus::of(s, true), ComponentStatus::Operational);
        }
    }

    #[test]
    fn the_timeline_is_the_worst_instance_and_makes_incidents_and_days() {
        use AlertState::*;
        let start = 0;
        let t = [
            transition("a", Ok, Pending, DAY_MS + 10),
            transition("a", Pending, Firing, DAY_MS + 20),
            transition("b", Ok, NoData, DAY_MS + 30),
            transition("a", Firing, Resolved, DAY_MS + 40),
            transition("b", NoData, Ok, 3 * DAY_MS),
        ];
        let line = timeline(&t, true, start);
        assert_eq!(
            line,
            vec![
                (0, ComponentStatus::Operational),
                (DAY_MS + 20, ComponentStatus::Down),
                (DAY_MS + 40, ComponentStatus::Degraded),
                (3 * DAY_MS, ComponentStatus::Operational),
            ]
        );
        let incidents = incidents_of("API", &line);
        assert_eq!(incidents.len(), 1);
        assert_eq!(incidents[0].status, ComponentStatus::Down);
        assert_eq!((incidents[0].started_at, incidents[0].resolved_at), (DAY_MS + 20, Some(3 * DAY_MS)));
        let now = 4 * DAY_MS + 5;
        let days = days(&line, start, now, Some(10));
        assert_eq!(days.len() as i64, HISTORY_DAYS);
        let statuses: Vec<_> = days.iter().take(5).map(|d| d.status).collect();
        use ComponentStatus::*;
        assert_eq!(statuses, vec![Some(Operational), Some(Down), Some(Degraded), Some(Operational), Some(Operational)]);
        assert_eq!(days[0].date, "1970-01-01");
        // Before the rule existed: no data.
        assert_eq!(super::days(&line, start, now, Some(2 * DAY_MS))[1].status, None);
    }

    #[test]
    fn an_ongoing_incident_has_no_resolution_and_text_is_escaped() {
        let line = vec![(0, ComponentStatus::Operational), (5, ComponentStatus::Degraded)];
        let incidents = incidents_of("x", &line);
        assert_eq!(incidents[0].resolved_at, None);
        assert_eq!(escape("<a href='x'>&\""), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;");
        let svg = render_badge("<db>", ComponentStatus::Down);
        assert!(svg.contains("&lt;db&gt;: down") && !svg.contains("<db>"));
    }
}
