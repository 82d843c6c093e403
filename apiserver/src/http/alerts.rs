//! `/api/v1/alerts`: the current state of every rule instance, the history of transitions,
//! and a live stream of transitions (SSE) for the dashboard.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::sse::{Event, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use microdash_model::{AlertRuleSpec, Scope};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};

use crate::domain::Labels;
use crate::domain::alerting::{AlertState, Inhibitor, inhibited_by, silence_matches};
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{AppError, AppResult};
use crate::storage::alerts::SpecKind;

/// One alert instance: a rule and one label set (the pair is its identity; the server's own
/// row id is not shown, so nothing in it counts other tenants' alerts).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertView {
    pub rule: String,
    pub labels: Labels,
    pub state: AlertState,
    pub severity: String,
    /// The latest aggregate, when this process evaluates; else the value at the last transition.
    pub value: Option<f64>,
    /// When the current state was entered.
    pub since: i64,
    /// When the current problem began, while FIRING or NODATA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_since: Option<i64>,
    /// Ids of the active silences that hold back its notifications (`/api/v1/silences`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub silenced_by: Vec<String>,
    /// The rule whose firing alert mutes this one (`inhibits`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inhibited_by: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertView>,
}

#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerting", responses((status = 200, body = AlertList)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> AppResult<Json<AlertList>> {
    let tenant = caller.require(Scope::Read)?;
    // Each rule's severity and labels (the labels count for silences), and its inhibition.
    let mut inhibitors: Vec<Inhibitor> = Vec::new();
    let rules: HashMap<String, (String, Labels)> = state
        .store
        .list_specs(SpecKind::Rule, Some(tenant.tenant_id))
        .await?
        .into_iter()
        .map(|r| {
            let (severity, labels) = match serde_json::from_str::<AlertRuleSpec>(&r.spec) {
                Ok(spec) => {
                    if let Some(inhibits) = &spec.inhibits {
                        inhibitors.push(Inhibitor::new(&r.name, inhibits));
                    }
                    (spec.severity().to_string(), spec.labels)
                }
                Err(_) => ("warning".into(), Labels::new()),
            };
            (r.name, (severity, labels))
        })
        .collect();
    let now = crate::domain::now_ms();
    let silences: Vec<_> = state
        .store
        .list_silences(Some(tenant.tenant_id), now)
        .await?
        .into_iter()
        .filter(|s| s.starts_at <= now)
        .collect();
    let no_labels = Labels::new();
    let engine = state.alerting.engine.as_ref();
    let instances = state.store.list_instances(Some(tenant.tenant_id)).await?;
    for inhibitor in &mut inhibitors {
        let rule_labels = rules.get(&inhibitor.rule).map(|(_, l)| l).unwrap_or(&no_labels);
        let rule = inhibitor.rule.clone();
        for r in instances.iter().filter(|r| r.rule == rule) {
            inhibitor.observe(r.instance.state, rule_labels, &r.labels);
        }
    }
    let alerts = instances
        .into_iter()
        .map(|r| AlertView {
            inhibited_by: {
                let rule_labels = rules.get(&r.rule).map(|(_, l)| l).unwrap_or(&no_labels);
                inhibited_by(&inhibitors, &r.rule, rule_labels, &r.labels).map(str::to_string)
            },
            value: engine.and_then(|e| e.current_value(r.id)).or(r.instance.value),
            severity: rules.get(&r.rule).map(|(s, _)| s.clone()).unwrap_or_else(|| "warning".into()),
            silenced_by: silences
                .iter()
                .filter(|s| {
                    let rule_labels = rules.get(&r.rule).map(|(_, l)| l).unwrap_or(&no_labels);
                    silence_matches(&s.matchers, &r.rule, rule_labels, &r.labels)
                })
                .map(|s| s.id.clone())
                .collect(),
            rule: r.rule,
            labels: r.labels,
            state: r.instance.state,
            since: r.instance.since,
            active_since: r.instance.active_since,
        })
        .collect();
    Ok(Json(AlertList { alerts }))
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransitionView {
    pub id: i64,
    pub rule: String,
    pub labels: Labels,
    pub from: AlertState,
    pub to: AlertState,
    pub value: Option<f64>,
    pub at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TransitionList {
    pub transitions: Vec<TransitionView>,
}

#[derive(Deserialize, IntoParams)]
pub struct HistoryParams {
    /// Only this rule's transitions.
    pub rule: Option<String>,
    /// Transitions older than this id (the last `id` of the previous page).
    pub before: Option<i64>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/alerts/history", tag = "alerting", params(HistoryParams),
    responses((status = 200, body = TransitionList)))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HistoryParams>,
) -> AppResult<Json<TransitionList>> {
    let tenant = caller.require(Scope::Read)?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::bad_request("limit is between 1 and 1000").field("limit"));
    }
    let transitions = state
        .store
        .list_transitions(tenant.tenant_id, params.rule.as_deref(), params.before, limit)
        .await?
        .into_iter()
        .map(|t| TransitionView {
            id: t.id,
            rule: t.rule,
            labels: t.labels,
            from: t.from,
            to: t.to,
            value: t.value,
            at: t.at,
        })
        .collect();
    Ok(Json(TransitionList { transitions }))
}

#[utoipa::path(get, path = "/api/v1/alerts/stream", tag = "alerting",
    responses((status = 200, content_type = "text/event-stream",
        description = "`event: transition`, `data:` a transition of the tenant's alerts, as in /alerts/history"),
        (status = 404, body = crate::http::error::Problem, description = "this process does not evaluate alerts")))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
) -> AppResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let tenant = caller.require(Scope::Read)?;
    let engine = state
        .alerting
        .engine
        .as_ref()
        .ok_or_else(|| AppError::not_found("this process does not evaluate alerts; poll /api/v1/alerts"))?;
    let tenant_id = tenant.tenant_id;
    // Held by the response: the tenant's count of open streams drops when it ends.
    let permit = crate::http::stream::stream_permit(&state, &tenant)?;
    let live = stream::unfold((engine.subscribe(), permit), |(mut rx, permit)| async move {
        match rx.recv().await {
            Ok(event) => Some((Some(event), (rx, permit))),
            Err(RecvError::Lagged(_)) => Some((None, (rx, permit))),
            Err(RecvError::Closed) => None,
        }
    })
    .filter_map(move |event| async move {
        match event {
            Some(e) if e.tenant_id == tenant_id => {
                let view = TransitionView {
                    id: e.id,
                    rule: e.rule,
                    labels: e.labels,
                    from: e.from,
                    to: e.to,
                    value: e.value,
                    at: e.at,
                };
                Some(Ok(Event::default().event("transition").id(e.id.to_string()).json_data(view).expect("serializes")))
            }
            Some(_) => None,
            // Missed transitions: tell the client to reload the lists.
            None => Some(Ok(Event::default().event("lagged").data("reload"))),
        }
    });
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
    Ok(Sse::new(retry.chain(live).take_until(stopped)).keep_alive(crate::http::stream::keep_alive()))
}
