//! The tools: their schemas and descriptions (written for a model to choose and fill them well),
//! the scope each needs, and the HTTP calls each makes.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use axum::http::Method;
use microdash_model::{AlertRuleSpec, NotificationChannelSpec, Scope};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::backend::{Answer, Backend};
use crate::domain::now_ms;
use crate::http::params::parse_time;
use crate::storage::Aggregation;

/// A query's points per series when the caller names no step and no budget.
const DEFAULT_MAX_POINTS: u32 = 120;
/// The most points per series a caller may ask for: answers stay small enough for a context.
const MAX_POINTS: u32 = 2000;

/// What `encode` leaves as it is in a path segment: RFC 3986's unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn encode(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

/// `?k=v&…` of the pairs whose value is present, form-encoded as the API's `Params` reads it.
fn query_string(pairs: &[(&str, Option<String>)]) -> String {
    let present: Vec<(&str, &str)> = pairs.iter().filter_map(|(k, v)| Some((*k, v.as_deref()?))).collect();
    if present.is_empty() {
        return String::new();
    }
    format!("?{}", serde_urlencoded::to_string(present).expect("string pairs encode"))
}

/// `k=v,k2=v2`, as the HTTP API's `match` parameter reads it.
fn matchers_param(matchers: &BTreeMap<String, String>) -> Option<String> {
    (!matchers.is_empty()).then(|| matchers.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeriesArgs {
    /// The metric name, e.g. `cpu.usage` (see `list_metrics`).
    pub metric: String,
    /// Label equality matchers, e.g. `{"host": "web-1"}`; omitted = every series of the metric.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelValuesArgs {
    /// A label name such as `host`, or `__name__` for the metric names.
    pub label: String,
    /// Only the series of this metric; omitted = every series of the tenant.
    #[serde(default)]
    pub metric: Option<String>,
}

#[derive(Deserialize, JsonSchema, Clone, Copy)]
pub enum QueryResolution {
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "raw")]
    Raw,
    #[serde(rename = "1m")]
    OneMinute,
    #[serde(rename = "5m")]
    FiveMinutes,
}

impl QueryResolution {
    fn as_str(self) -> &'static str {
        match self {
            QueryResolution::Auto => "auto",
            QueryResolution::Raw => "raw",
            QueryResolution::OneMinute => "1m",
            QueryResolution::FiveMinutes => "5m",
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueryArgs {
    /// The metric name, e.g. `cpu.usage` (see `list_metrics`).
    pub metric: String,
    /// Label equality matchers, e.g. `{"host": "web-1"}`; omitted = every series of the metric.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// Start of the range: Unix milliseconds, an RFC 3339 time, `now` or `now-6h`. Default: one
    /// hour before `to`.
    #[serde(default)]
    pub from: Option<String>,
    /// End of the range, in the same forms. Default: `now`.
    #[serde(default)]
    pub to: Option<String>,
    /// Bucket width such as `60s`, `5m` or `1h`. Omitted: the tool picks the smallest whole
    /// number of seconds that keeps each series within `maxPoints` points.
    #[serde(default)]
    pub step: Option<String>,
    /// How the samples of a bucket are combined (default `avg`).
    #[serde(default)]
    pub agg: Option<Aggregation>,
    /// Where points come from: `auto` (default; raw samples for recent short ranges, 1-minute or
    /// 5-minute rollups for longer ones), or one of them explicitly.
    #[serde(default)]
    pub resolution: Option<QueryResolution>,
    /// Most points per series when `step` is omitted (default 120, 2 to 2000).
    #[serde(default)]
    pub max_points: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromqlArgs {
    /// A PromQL expression, e.g. `avg by (host) (rate(http_requests_total[5m]))`. Metric names with
    /// dots are written as `{__name__="cpu.usage"}`.
    pub query: String,
    /// The evaluation time (Unix seconds or RFC 3339); default now.
    #[serde(default)]
    pub time: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryArgs {
    /// Only this rule's transitions.
    #[serde(default)]
    pub rule: Option<String>,
    /// Transitions older than this id (the last `id` of the previous page).
    #[serde(default)]
    pub before: Option<i64>,
    /// At most this many, newest first (default 100, at most 1000).
    #[serde(default)]
    pub limit: Option<i64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NameArgs {
    /// The name, as listed by the matching `list_…` tool.
    pub name: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PutRuleArgs {
    /// The rule's name (letters, digits, `-`, `_`, `.`); an existing rule of that name is replaced.
    pub name: String,
    /// The rule: which series (`metric`, `match`), the `condition` (aggregation over a window
    /// compared with a threshold), `for`, `severity`, `channels`, `labels`, `annotations`.
    #[schemars(with = "AlertRuleSpec")]
    pub spec: Value,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PutChannelArgs {
    /// The channel's name; an existing channel of that name is replaced.
    pub name: String,
    /// Exactly one of `webhook` and `email`, plus `sendResolved` and `repeatInterval`.
    #[schemars(with = "NotificationChannelSpec")]
    pub spec: Value,
}

/// One tool: what a client lists, and the scope a token needs to see it.
pub struct ToolEntry {
    pub tool: Tool,
    pub scope: Scope,
}

fn schema<T: JsonSchema>() -> Arc<JsonObject> {
    match serde_json::to_value(schemars::schema_for!(T)).expect("a schema serializes") {
        Value::Object(object) => Arc::new(object),
        _ => unreachable!("a root schema is an object"),
    }
}

fn tool<T: JsonSchema>(name: &'static str, title: &str, description: &'static str, scope: Scope) -> ToolEntry {
    let read_only = scope == Scope::Read;
    let annotations = ToolAnnotations::with_title(title).read_only(read_only).destructive(name.starts_with("delete_"));
    let mut tool = Tool::new(name, description, schema::<T>());
    tool.title = Some(title.to_string());
    tool.annotations = Some(annotations);
    ToolEntry { tool, scope }
}

/// Every tool, in the order clients list them.
pub static TOOLS: LazyLock<Vec<ToolEntry>> = LazyLock::new(|| {
    vec![
        tool::<NoArgs>(
            "list_metrics",
            "List metrics",
            "The names of every metric the tenant has stored, e.g. `cpu.usage`. Start here to find \
             what can be queried.",
            Scope::Read,
        ),
        tool::<LabelValuesArgs>(
            "list_label_values",
            "List label values",
            "The values one label takes across the tenant's series (optionally of one metric), e.g. \
             every `host`. Answers Prometheus' shape: `{\"status\":\"success\",\"data\":[…]}`.",
            Scope::Read,
        ),
        tool::<SeriesArgs>(
            "latest_values",
            "Latest values",
            "The series of a metric (optionally narrowed by label matchers) with their labels and \
             their newest sample (`last`: `[Unix ms, value]`). Use it for \"what is X \
             now\" questions.",
            Scope::Read,
        ),
        tool::<QueryArgs>(
            "query_range",
            "Query a time range",
            "Points of a metric's series over a time range, bucketed by `step` and combined by `agg`, \
             from raw samples or the 1m/5m rollups as the HTTP query API chooses them. Without a \
             step the tool keeps each series within `maxPoints` points, so answers stay small: ask \
             for a narrower range or a label matcher rather than more points. Times are Unix ms.",
            Scope::Read,
        ),
        tool::<PromqlArgs>(
            "promql_query",
            "PromQL instant query",
            "Evaluates a PromQL expression at one instant, as Prometheus' `/api/v1/query` does \
             (answer in Prometheus' shape, times in Unix seconds, values as strings).",
            Scope::Read,
        ),
        tool::<NoArgs>(
            "list_alerts",
            "List alerts",
            "Every alert instance (a rule and one series' labels) with its state (OK, PENDING, \
             FIRING, RESOLVED, NODATA), severity, latest value and since when.",
            Scope::Read,
        ),
        tool::<HistoryArgs>(
            "alert_history",
            "Alert history",
            "State transitions of the tenant's alerts, newest first (optionally of one rule): when \
             each series went FIRING or back to OK, with the value at that moment. Page with `before`.",
            Scope::Read,
        ),
        tool::<NoArgs>(
            "list_rules",
            "List alert rules",
            "Every alert rule with its spec (metric, matchers, condition, for, channels) and its \
             status (worst state, instances, how many firing).",
            Scope::Read,
        ),
        tool::<NameArgs>(
            "explain_rule",
            "Explain an alert rule",
            "Why a rule is or is not firing: its condition in words, and for each series it \
             evaluates the current value, the state, since when, and whether the condition holds; \
             plus its latest transitions.",
            Scope::Read,
        ),
        tool::<NoArgs>(
            "list_channels",
            "List notification channels",
            "Every notification channel (webhook or email) with its settings (secrets are never \
             shown).",
            Scope::Read,
        ),
        tool::<NoArgs>(
            "list_dashboards",
            "List dashboards",
            "The tenant's saved dashboards: names, panels and their queries.",
            Scope::Read,
        ),
        tool::<PutRuleArgs>(
            "put_rule",
            "Create or replace an alert rule",
            "Creates the rule, or replaces the rule of that name. The answer is the stored rule; a \
             refused spec answers every offending field with the reason. Needs the admin scope.",
            Scope::Admin,
        ),
        tool::<NameArgs>(
            "delete_rule",
            "Delete an alert rule",
            "Deletes the rule and its alert instances. Needs the admin scope.",
            Scope::Admin,
        ),
        tool::<PutChannelArgs>(
            "put_channel",
            "Create or replace a notification channel",
            "Creates the channel, or replaces the channel of that name. Needs the admin scope.",
            Scope::Admin,
        ),
        tool::<NameArgs>(
            "delete_channel",
            "Delete a notification channel",
            "Deletes the channel; rules that name it no longer notify through it. Needs the admin \
             scope.",
            Scope::Admin,
        ),
        tool::<NameArgs>(
            "test_channel",
            "Send a test notification",
            "Sends a test notification through the channel now and answers how the receiver \
             answered. Needs the admin scope.",
            Scope::Admin,
        ),
    ]
});

/// The arguments, or a tool error naming the offending field (as the HTTP API names fields).
fn arguments<T: DeserializeOwned>(tool: &str, args: JsonObject) -> Result<T, CallToolResult> {
    serde_path_to_error::deserialize(Value::Object(args)).map_err(|e| {
        let message = e.inner().to_string();
        let mut field = e.path().to_string();
        // A missing field is reported at its parent: name the field itself.
        if let Some(missing) = message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
            field = if field == "." { missing.to_string() } else { format!("{field}.{missing}") };
        }
        let detail = format!("invalid arguments of {tool}: {message}");
        let mut problem =
            json!({"type": "about:blank", "title": "Unprocessable Entity", "status": 422, "detail": detail});
        if field != "." {
            problem["field"] = json!(field);
        }
        CallToolResult::structured_error(problem)
    })
}

/// The API's answer as a tool result: its JSON body, or its problem as a tool error.
fn result(answer: Answer, done: &str) -> CallToolResult {
    match (answer.is_success(), answer.body) {
        (true, Value::Null) => CallToolResult::success(vec![ContentBlock::text(done)]),
        (true, body @ Value::Object(_)) => CallToolResult::structured(body),
        (true, body) => CallToolResult::success(vec![ContentBlock::text(body.to_string())]),
        (false, body @ Value::Object(_)) => CallToolResult::structured_error(body),
        (false, body) => CallToolResult::error(vec![ContentBlock::text(format!("HTTP {}: {body}", answer.status))]),
    }
}

/// A transport failure (the server did not answer) as a tool error.
fn unreachable_error(message: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

/// Runs a tool. `None`: no tool of that name.
pub async fn call(backend: &Backend, name: &str, args: JsonObject) -> Option<CallToolResult> {
    if !TOOLS.iter().any(|t| t.tool.name == name) {
        return None;
    }
    Some(run(backend, name, args).await.unwrap_or_else(|tool_error| tool_error))
}

async fn get(backend: &Backend, path: &str) -> Result<Answer, CallToolResult> {
    backend.call(Method::GET, path, None).await.map_err(unreachable_error)
}

/// Runs one of `TOOLS` (a test checks that each has its arm); `Err` is a tool error.
async fn run(backend: &Backend, name: &str, args: JsonObject) -> Result<CallToolResult, CallToolResult> {
    {
        match name {
            "list_metrics" => {
                arguments::<NoArgs>(name, args)?;
                Ok(result(get(backend, "/api/v1/metrics").await?, ""))
            }
            "list_label_values" => {
                let a: LabelValuesArgs = arguments(name, args)?;
                let selector = a.metric.map(|m| format!("{{__name__={}}}", json!(m)));
                let path = format!(
                    "/prometheus/api/v1/label/{}/values{}",
                    encode(&a.label),
                    query_string(&[("match[]", selector)])
                );
                Ok(result(get(backend, &path).await?, ""))
            }
            "latest_values" => {
                let a: SeriesArgs = arguments(name, args)?;
                let path = format!(
                    "/api/v1/series{}",
                    query_string(&[("metric", Some(a.metric)), ("match", matchers_param(&a.matchers))])
                );
                Ok(result(get(backend, &path).await?, ""))
            }
            "query_range" => {
                let a: QueryArgs = arguments(name, args)?;
                Ok(result(get(backend, &query_path(a)?).await?, ""))
            }
            "promql_query" => {
                let a: PromqlArgs = arguments(name, args)?;
                let path =
                    format!("/prometheus/api/v1/query{}", query_string(&[("query", Some(a.query)), ("time", a.time)]));
                Ok(result(get(backend, &path).await?, ""))
            }
            "list_alerts" => {
                arguments::<NoArgs>(name, args)?;
                Ok(result(get(backend, "/api/v1/alerts").await?, ""))
            }
            "alert_history" => {
                let a: HistoryArgs = arguments(name, args)?;
                let path = format!(
                    "/api/v1/alerts/history{}",
                    query_string(&[
                        ("rule", a.rule),
                        ("before", a.before.map(|b| b.to_string())),
                        ("limit", a.limit.map(|l| l.to_string())),
                    ])
                );
                Ok(result(get(backend, &path).await?, ""))
            }
            "list_rules" => {
                arguments::<NoArgs>(name, args)?;
                Ok(result(get(backend, "/api/v1/rules").await?, ""))
            }
            "explain_rule" => {
                let a: NameArgs = arguments(name, args)?;
                explain_rule(backend, &a.name).await
            }
            "list_channels" => {
                arguments::<NoArgs>(name, args)?;
                Ok(result(get(backend, "/api/v1/channels").await?, ""))
            }
            "list_dashboards" => {
                arguments::<NoArgs>(name, args)?;
                Ok(result(get(backend, "/api/v1/dashboards").await?, ""))
            }
            "put_rule" => {
                let a: PutRuleArgs = arguments(name, args)?;
                let path = format!("/api/v1/rules/{}", encode(&a.name));
                let answer = backend.call(Method::PUT, &path, Some(&a.spec)).await.map_err(unreachable_error)?;
                Ok(result(answer, ""))
            }
            "put_channel" => {
                let a: PutChannelArgs = arguments(name, args)?;
                let path = format!("/api/v1/channels/{}", encode(&a.name));
                let answer = backend.call(Method::PUT, &path, Some(&a.spec)).await.map_err(unreachable_error)?;
                Ok(result(answer, ""))
            }
            "delete_rule" | "delete_channel" => {
                let a: NameArgs = arguments(name, args)?;
                let kind = if name == "delete_rule" { "rule" } else { "channel" };
                let path = format!("/api/v1/{kind}s/{}", encode(&a.name));
                let answer = backend.call(Method::DELETE, &path, None).await.map_err(unreachable_error)?;
                Ok(result(answer, &format!("Deleted {kind} {:?}.", a.name)))
            }
            "test_channel" => {
                let a: NameArgs = arguments(name, args)?;
                let path = format!("/api/v1/channels/{}/test", encode(&a.name));
                let answer = backend.call(Method::POST, &path, None).await.map_err(unreachable_error)?;
                Ok(result(answer, &format!("Sent a test notification through {:?}.", a.name)))
            }
            other => unreachable!("the tool {other:?} is listed in TOOLS but has no arm in `run`"),
        }
    }
}

/// The HTTP query of `query_range`: times resolved once (so the answer is the HTTP API's for
/// exactly these parameters), and a step that keeps each series within the point budget. Times
/// that do not parse are passed on as they are: the API refuses them with its own message.
fn query_path(a: QueryArgs) -> Result<String, CallToolResult> {
    let max_points = a.max_points.unwrap_or(DEFAULT_MAX_POINTS);
    // Two points at least: a range touches two step-aligned buckets whatever the step.
    if !(2..=MAX_POINTS).contains(&max_points) {
        return Err(CallToolResult::structured_error(json!({
            "type": "about:blank", "title": "Unprocessable Entity", "status": 422,
            "detail": format!("maxPoints must be between 2 and {MAX_POINTS}"), "field": "maxPoints",
        })));
    }
    let now = now_ms();
    let to_text = a.to.unwrap_or_else(|| "now".to_string());
    let to = parse_time(&to_text, now);
    let from = match (&a.from, to) {
        (Some(text), _) => parse_time(text, now),
        (None, Some(to)) => Some(to - 3_600_000),
        (None, None) => None,
    };
    let (from_param, to_param) = match (from, to) {
        (Some(from), Some(to)) => (Some(from.to_string()), Some(to.to_string())),
        _ => (a.from, Some(to_text)),
    };
    let step = match (a.step, from, to) {
        (Some(step), _, _) => Some(step),
        (None, Some(from), Some(to)) if to >= from => {
            // Buckets are aligned to the step and both ends are inclusive: a range of n steps
            // can touch n + 2 buckets.
            let per_point = ((to - from) as u64).div_ceil(u64::from((max_points - 2).max(1)));
            Some((per_point.div_ceil(1000).max(1) * 1000).to_string())
        }
        (None, _, _) => None,
    };
    Ok(format!(
        "/api/v1/query{}",
        query_string(&[
            ("metric", Some(a.metric)),
            ("match", matchers_param(&a.matchers)),
            ("from", from_param),
            ("to", to_param),
            ("step", step),
            (
                "agg",
                a.agg.map(|g| serde_json::to_value(g).expect("serializes").as_str().unwrap_or_default().to_string())
            ),
            ("resolution", a.resolution.map(|r| r.as_str().to_string())),
        ])
    ))
}

/// The rule, its alerts and its latest transitions, read through the API, with each series'
/// state put in words.
async fn explain_rule(backend: &Backend, name: &str) -> Result<CallToolResult, CallToolResult> {
    let rule = get(backend, &format!("/api/v1/rules/{}", encode(name))).await?;
    if !rule.is_success() {
        return Ok(result(rule, ""));
    }
    let alerts = get(backend, "/api/v1/alerts").await?;
    if !alerts.is_success() {
        return Ok(result(alerts, ""));
    }
    let history_query = query_string(&[("rule", Some(name.to_string())), ("limit", Some("10".to_string()))]);
    let history = get(backend, &format!("/api/v1/alerts/history{history_query}")).await?;
    if !history.is_success() {
        return Ok(result(history, ""));
    }
    // The rule's answer is its spec's fields beside its name and what the server adds.
    let mut fields = rule.body.clone();
    if let Value::Object(map) = &mut fields {
        for key in microdash_model::READ_ONLY_KEYS.iter().chain(&["name"]) {
            map.remove(*key);
        }
    }
    let spec: Option<AlertRuleSpec> = serde_json::from_value(fields).ok();
    let condition = spec.as_ref().map(describe_condition);
    let instances: Vec<Value> = alerts.body["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["rule"] == json!(name))
        .map(|a| {
            let mut a = a.clone();
            a["explanation"] = json!(explain_instance(spec.as_ref(), &a));
            a
        })
        .collect();
    let summary = match (&spec, instances.len()) {
        (Some(spec), 0) => format!(
            "No series of `{}`{} has been evaluated yet: the rule fires only once a matching series \
             reports samples.",
            spec.metric,
            if spec.matchers.is_empty() { String::new() } else { format!(" matching {:?}", spec.matchers) }
        ),
        (_, n) => {
            let firing = instances.iter().filter(|a| a["state"] == "FIRING").count();
            format!("{n} series evaluated, {firing} firing.")
        }
    };
    Ok(CallToolResult::structured(json!({
        "rule": rule.body,
        "condition": condition,
        "summary": summary,
        "instances": instances,
        "recentTransitions": history.body["transitions"],
    })))
}

fn describe_condition(spec: &AlertRuleSpec) -> String {
    let c = &spec.condition;
    let over = match &c.window {
        Some(window) => format!("{} of `{}` over the last {window}", c.aggregation.as_str(), spec.metric),
        None => format!("the newest sample of `{}`", spec.metric),
    };
    let held = match spec.for_duration.as_deref() {
        None | Some("0s") | Some("0") => "fires at once".to_string(),
        Some(d) => format!("fires once it has held for {d}"),
    };
    format!("{over} {} {}, per series; {held}", c.op.as_str(), c.threshold)
}

fn explain_instance(spec: Option<&AlertRuleSpec>, alert: &Value) -> String {
    let state = alert["state"].as_str().unwrap_or("?");
    let since = alert["since"].as_i64().map(|t| format!(" since {t} (Unix ms)")).unwrap_or_default();
    let value = alert["value"].as_f64();
    let Some(spec) = spec else { return format!("{state}{since}") };
    let c = &spec.condition;
    let holds = value.map(|v| c.op.holds(v, c.threshold));
    let comparison = match (value, holds) {
        (Some(v), Some(true)) => format!("{v} {} {} holds", c.op.as_str(), c.threshold),
        (Some(v), _) => format!("{v} {} {} does not hold", c.op.as_str(), c.threshold),
        (None, _) => "no value yet".to_string(),
    };
    match state {
        "FIRING" => format!("FIRING{since}: {comparison}."),
        "PENDING" => format!(
            "PENDING{since}: {comparison}; it fires once held for {}.",
            spec.for_duration.as_deref().unwrap_or("its `for` duration")
        ),
        "NODATA" => format!("NODATA{since}: the series stopped reporting."),
        "RESOLVED" => format!("RESOLVED{since}: {comparison}."),
        _ => format!("OK{since}: {comparison}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every listed tool has its arm in `run` (a router without routes answers 404 to any call).
    #[tokio::test]
    async fn every_listed_tool_runs() {
        let backend = Backend::in_process(axum::Router::new(), &axum::http::HeaderMap::new());
        for entry in TOOLS.iter() {
            let name = entry.tool.name.as_ref();
            assert!(call(&backend, name, JsonObject::new()).await.is_some(), "{name}");
        }
        assert!(call(&backend, "no_such_tool", JsonObject::new()).await.is_none());
    }

    #[test]
    fn the_point_budget_holds_for_step_aligned_inclusive_buckets() {
        for (span, max_points) in [(7_200_000_i64, 120_u32), (86_400_000, 60), (59_000, 3), (1_000, 2), (3_600_000, 2)]
        {
            let args = QueryArgs {
                metric: "m".into(),
                matchers: BTreeMap::new(),
                from: Some("1700000000000".into()),
                to: Some((1_700_000_000_000 + span).to_string()),
                step: None,
                agg: None,
                resolution: None,
                max_points: Some(max_points),
            };
            let path = query_path(args).unwrap_or_else(|_| panic!("a valid query"));
            let step: i64 = path.split("step=").nth(1).unwrap().split('&').next().unwrap().parse().unwrap();
            assert_eq!(step % 1000, 0, "whole seconds: {path}");
            let from = 1_700_000_000_000 / step;
            let to = (1_700_000_000_000 + span) / step;
            // Buckets from..=to, both ends inclusive: at most max_points of them.
            assert!(to - from < i64::from(max_points), "{span} ms in {max_points} points: {path}");
        }
    }
}
