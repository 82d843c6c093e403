//! Completes the OpenAPI document with the answers every operation can give beside its own:
//! the ones that come from shared machinery rather than from the handler (the `Caller`
//! extractor's 401/403, the database's 503, the body limit's 413, …), so that no handler has to
//! repeat them and none can forget one. Every error answer is declared as
//! `application/problem+json` with the `Problem` schema, as `error.rs` sends it.

use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::{Content, ObjectBuilder, OpenApi, Ref, RefOr, Required, ResponseBuilder, Type, schema::Schema};

use crate::http::auth::TENANT_HEADER;

pub struct Contract;

/// Which shared answers an operation can give, from its path and method.
struct Traits {
    /// Needs credentials (`Caller`): 401 without valid ones, 403 without the scope or role.
    authenticated: bool,
    /// Acts on a tenant's data: the admin token names the tenant in `X-Microdash-Tenant`, which
    /// may be unknown (404) or not a header string (400).
    tenant_data: bool,
    /// Reads the database: 503 when it does not answer.
    database: bool,
    /// Reads a JSON body: 400 when it is not JSON, 413 over `max_body_bytes`, 415 for a cookie
    /// session's write that is not JSON.
    body: bool,
    /// Parses a query string by hand: 400 names the parameter.
    query: bool,
    /// Names a resource in its path: 404 when there is none.
    path_resource: bool,
}

fn traits(path: &str, op: &Operation) -> Traits {
    let authenticated = !op.security.as_ref().is_some_and(|s| s.iter().all(is_empty_requirement));
    let api = path.starts_with("/api/v1/") || path.starts_with("/prometheus/");
    Traits {
        authenticated,
        tenant_data: authenticated && api && !path.starts_with("/api/v1/tenants") && path != "/api/v1/session",
        database: api,
        body: op.request_body.is_some(),
        query: op.parameters.as_ref().is_some_and(|p| p.iter().any(|p| p.parameter_in == ParameterIn::Query)),
        path_resource: path.contains('{'),
    }
}

fn is_empty_requirement(req: &utoipa::openapi::security::SecurityRequirement) -> bool {
    serde_json::to_value(req).is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
}

fn problem_content() -> Content {
    Content::new(Some(RefOr::Ref(Ref::from_schema_name("Problem"))))
}

const PROBLEM: &str = "application/problem+json";

fn describe(status: &str) -> &'static str {
    match status {
        "400" => "The request is malformed: a parameter, header or body that cannot be read (`field` names it)",
        "401" => "Missing, invalid, revoked or expired credentials",
        "403" => "The credentials lack the scope or role this operation needs",
        "404" => "No such resource (or the tenant named in X-Microdash-Tenant does not exist)",
        "409" => "It exists already",
        "413" => "The body is larger than max_body_bytes (or the batch larger than the limits)",
        "415" => "A write with the dashboard's session cookie that is not application/json",
        "422" => "The body is JSON but not valid (`field` and `errors` say what is wrong)",
        "429" => "Rate limited: retry after Retry-After seconds",
        "503" => "The database or ingest queue is unavailable: retry after Retry-After seconds",
        _ => "Error",
    }
}

impl utoipa::Modify for Contract {
    fn modify(&self, openapi: &mut OpenApi) {
        apply_strict_schemas(openapi);
        for (path, item) in openapi.paths.paths.iter_mut() {
            for op in
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
            {
                complete(path, op);
            }
        }
        unique_operation_ids(openapi);
    }
}

/// OpenAPI wants every `operationId` unique; utoipa takes the handler's name, which repeats
/// across modules (`list`, `create`, `stream`, `metrics`). Each repeated one becomes the
/// method and path (`get_api_v1_rules_by_name`), which are unique; the others stay.
fn unique_operation_ids(openapi: &mut OpenApi) {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for item in openapi.paths.paths.values() {
        for op in [&item.get, &item.put, &item.post, &item.delete, &item.patch].into_iter().flatten() {
            if let Some(id) = &op.operation_id {
                *seen.entry(id.clone()).or_default() += 1;
            }
        }
    }
    for (path, item) in openapi.paths.paths.iter_mut() {
        for (method, op) in [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ] {
            let Some(op) = op else { continue };
            if op.operation_id.as_ref().is_some_and(|id| seen[id] > 1) {
                op.operation_id = Some(operation_id_of(method, path));
            }
        }
    }
}

/// `get` + `/api/v1/rules/{name}` → `get_api_v1_rules_by_name`.
fn operation_id_of(method: &str, path: &str) -> String {
    let mut id = method.to_string();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(param) => {
                id.push_str("by_");
                id.push_str(param);
            }
            None => id.push_str(&segment.replace(['.', '-'], "_")),
        }
    }
    id
}

fn complete(path: &str, op: &mut Operation) {
    let t = traits(path, op);
    let mut statuses: Vec<&str> = Vec::new();
    if t.authenticated {
        statuses.extend(["401", "403"]);
    }
    if t.tenant_data {
        statuses.extend(["400", "404"]);
        let header: Parameter = ParameterBuilder::new()
            .name(TENANT_HEADER)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "With the admin token: the tenant whose data this request acts on (a tenant token may only \
                 name its own tenant)",
            ))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String).pattern(Some(TENANT_NAME_PATTERN))))
            .build();
        let params = op.parameters.get_or_insert_with(Vec::new);
        if !params.iter().any(|p| p.name.eq_ignore_ascii_case(TENANT_HEADER)) {
            params.push(header);
        }
    }
    if t.database {
        statuses.push("503");
    }
    if t.body {
        statuses.extend(["400", "413", "415"]);
        if let Some(body) = op.request_body.as_mut() {
            body_required(body);
        }
    }
    if t.query {
        statuses.push("400");
    }
    if t.path_resource {
        statuses.push("404");
    }
    let responses = &mut op.responses.responses;
    for status in statuses {
        responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(ResponseBuilder::new().description(describe(status)).build()));
    }
    // Every error answer is problem+json, whatever the handler's annotation said; under
    // /prometheus/api/ it is Prometheus' own error shape (`prometheus::prometheus_errors`).
    let (error_type, error_content) = if path.starts_with("/prometheus/api/") {
        ("application/json", Content::new(Some(RefOr::Ref(Ref::from_schema_name("PromError")))))
    } else {
        (PROBLEM, problem_content())
    };
    for (status, response) in responses.iter_mut() {
        let error = status.starts_with('4') || status.starts_with('5');
        if let (true, RefOr::T(response)) = (error, response) {
            response.content.clear();
            response.content.insert(error_type.to_string(), error_content.clone());
            if response.description.is_empty() {
                response.description = describe(status).to_string();
            }
        }
    }
}

/// Every body-taking operation needs its body: an empty one is malformed JSON (400).
fn body_required(body: &mut RequestBody) {
    body.required = Some(Required::True);
}

/// A tenant's name, as `tenants::validate_tenant_name` accepts it.
pub const TENANT_NAME_PATTERN: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

/// Text a person reads (a status page's title, a component's name), as
/// `status_pages::check_text` accepts it: no control characters, and not blank
/// (`status_pages::is_blank` lists the blank characters).
pub const TEXT_PATTERN: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]*\
    [^\\x00-\\x1f\\x7f-\\x9f \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff]\
    [^\\x00-\\x1f\\x7f-\\x9f]*$";

/// A metric name or label key, as `microdash_model::is_valid_name` accepts it.
pub const NAME_PATTERN: &str = "^[a-zA-Z_][a-zA-Z0-9_.:-]*$";
/// `match=k=v,k2=v2`: comma-separated `key=value` pairs (empty pieces are skipped).
const MATCH_PATTERN: &str = "^([^,=]*=[^,]*)?(,([^,=]*=[^,]*)?)*$";
/// A time as `params::parse_time` reads it: Unix ms, `now`, `now-<duration>` or RFC 3339 (the
/// pattern keeps to values that are always in range: years 1980 to 9998, days 1 to 28).
const TIME_PATTERN: &str = "^([0-9]{1,14}|now|now-[0-9]{1,6}(ms|s|m|h|d)|\
    (19[89][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,3})?(Z|[+-]0[0-9]:00))$";
/// A positive duration like `60s` or plain milliseconds (`params::duration_ms`), in range.
const STEP_PATTERN: &str = "^([1-9][0-9]{0,9}|[1-9][0-9]{0,6}(ms|s|m|h|d))$";

/// The schemas of parameters and bodies, as strict as the handlers read them (the handlers parse
/// by hand, so their rules are stated here): (path, method, parameter or `body`, schema), or
/// (`#Name`, "", "", schema) for a component schema that request bodies refer to.
fn strict_schemas() -> Vec<(&'static str, &'static str, &'static str, serde_json::Value)> {
    use serde_json::json;
    let name = json!({"type": "string", "pattern": NAME_PATTERN, "maxLength": 200});
    let matchers = json!({"type": "string", "pattern": MATCH_PATTERN});
    let time = json!({"type": "string", "pattern": TIME_PATTERN});
    // `expires_in` and retention durations: whole units, always within the server's range.
    let expiry = json!({"type": ["string", "null"], "pattern": "^[1-9][0-9]{0,3}(s|m|h|d)$"});
    let retention = json!({"type": ["string", "null"], "pattern": "^[1-9][0-9]{0,3}(m|h|d)$"});
    let scopes =
        json!({"type": "array", "minItems": 1, "items": {"type": "string", "enum": ["ingest", "read", "admin"]}});
    let token_body = json!({
            "type": "object", "additionalProperties": false, "required": ["scopes"],
            "properties": {
                "scopes": scopes, "expires_in": expiry,
                "token": {"type": ["string", "null"], "pattern": "^[^\\s\\x00-\\x1f\\x7f-\\x9f]{32,}$",
                          "description": "Registers this secret instead of generating one (admin token only): at least \
                                          32 characters, no whitespace; 409 when it is registered already"},
    }});
    vec![
        ("#CreateToken", "", "", token_body),
        (
            "#SampleInput",
            "",
            "",
            json!({
                "type": "object", "additionalProperties": false, "required": ["metric", "value"],
                "properties": {
                    "metric": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 200, "example": "cpu.usage"},
                    "value": {"type": "number", "description": "A finite number"},
                    "ts": {"description": "Unix milliseconds or an RFC 3339 string, not before 1970 and at most \
                                           10 minutes (max_future) ahead of the server's clock; absent or null = \
                                           the time of receipt",
                           "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "format": "date-time"},
                                     {"type": "null"}]},
                    "labels": {"type": ["object", "null"], "maxProperties": 32,
                               "propertyNames": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 100},
                               "additionalProperties": {"type": "string", "maxLength": 1024,
                                                        "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*$"}},
                    "dedupe_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 128,
                                  "description": "Repeats within the dedupe window are counted as duplicates and \
                                                  not stored again"}}}),
        ),
        (
            "#BulkInput",
            "",
            "",
            json!({
                "description": "`{\"samples\": [...]}` or a bare array of samples, at most max_batch_samples",
                "oneOf": [
                    {"type": "object", "additionalProperties": false, "required": ["samples"],
                     "properties": {"samples": {"type": "array", "maxItems": 50000,
                                                "items": {"$ref": "#/components/schemas/SampleInput"}}}},
                    {"type": "array", "maxItems": 50000, "items": {"$ref": "#/components/schemas/SampleInput"}}]}),
        ),
        (
            "#CreateTenant",
            "",
            "",
            json!({
            "type": "object", "additionalProperties": false, "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": TENANT_NAME_PATTERN},
                "displayName": {"type": ["string", "null"]}}}),
        ),
        (
            "#RetentionInput",
            "",
            "",
            json!({
            "type": "object", "additionalProperties": false,
            "properties": {"raw": retention, "1m": retention, "5m": retention}}),
        ),
        (
            "#Login",
            "",
            "",
            json!({
            "type": "object", "additionalProperties": false, "required": ["token"],
            "properties": {"token": {"type": "string"}}}),
        ),
        ("/api/v1/series", "get", "metric", name.clone()),
        ("/api/v1/series", "get", "match", matchers.clone()),
        ("/api/v1/query", "get", "metric", name.clone()),
        ("/api/v1/query", "get", "match", matchers.clone()),
        ("/api/v1/query", "get", "from", time.clone()),
        ("/api/v1/query", "get", "to", time),
        ("/api/v1/query", "get", "step", json!({"type": "string", "pattern": STEP_PATTERN})),
        (
            "/api/v1/query",
            "get",
            "agg",
            json!({"type": "string", "enum": ["avg", "min", "max", "sum", "count", "last"]}),
        ),
        ("/api/v1/query", "get", "resolution", json!({"type": "string", "enum": ["auto", "raw", "1m", "5m"]})),
        ("/api/v1/stream", "get", "metric", json!({"type": "array", "items": name})),
        ("/api/v1/stream", "get", "match", matchers),
        ("/api/v1/stream", "get", "last_event_id", json!({"type": "integer", "minimum": 0, "maximum": u64::MAX})),
        ("/api/v1/alerts/history", "get", "limit", json!({"type": "integer", "minimum": 1, "maximum": 1000})),
        ("/api/v1/exporters/{name}", "put", "name", json!({"type": "string", "pattern": TENANT_NAME_PATTERN})),
        ("/api/v1/exporters/{name}", "delete", "name", json!({"type": "string", "pattern": TENANT_NAME_PATTERN})),
        ("/api/v1/status-pages/{slug}", "get", "slug", json!({"type": "string", "pattern": TENANT_NAME_PATTERN})),
        ("/api/v1/status-pages/{slug}", "put", "slug", json!({"type": "string", "pattern": TENANT_NAME_PATTERN})),
        ("/api/v1/status-pages/{slug}", "delete", "slug", json!({"type": "string", "pattern": TENANT_NAME_PATTERN})),
        ("/status/{slug}.json", "get", "slug", json!({"type": "string", "pattern": TENANT_NAME_PATTERN})),
        (
            "#StatusPageInput",
            "",
            "",
            json!({
            "type": "object", "additionalProperties": false, "required": ["title", "components"],
            "properties": {
                "title": {"type": "string", "maxLength": 100, "pattern": TEXT_PATTERN},
                "components": {"type": "array", "minItems": 1, "maxItems": 20, "items": {
                    "type": "object", "additionalProperties": false, "required": ["name", "rule"],
                    "properties": {
                        "name": {"type": "string", "maxLength": 60, "pattern": TEXT_PATTERN},
                        "rule": {"type": "string", "minLength": 1, "description": "An alert rule of the tenant (else 422)"}}}},
                "slug": {"type": "string", "description": "Optional; the path's slug"},
                "publicUrl": {"type": "string", "description": "Read-only, ignored"},
                "createdAt": {"type": "integer", "description": "Read-only, ignored"},
                "updatedAt": {"type": "integer", "description": "Read-only, ignored"}}}),
        ),
        (
            "/api/v1/dashboards/{name}",
            "put",
            "name",
            json!({"type": "string", "pattern": NAME_PATTERN, "maxLength": 100}),
        ),
        (
            "/api/v1/dashboards/{name}",
            "put",
            "body",
            json!({
            "type": "object", "required": ["panels"],
            "properties": {"panels": {"type": "array"}},
            "description": "A dashboard: any JSON object with a `panels` array, at most 256 KiB; `name` is set from the path"}),
        ),
    ]
}

fn apply_strict_schemas(openapi: &mut OpenApi) {
    for (path, method, name, schema) in strict_schemas() {
        let schema: Schema = serde_json::from_value(schema).expect("a valid schema");
        if let Some(component) = path.strip_prefix('#') {
            let components = openapi.components.get_or_insert_with(Default::default);
            assert!(components.schemas.contains_key(component), "no component schema {component}");
            components.schemas.insert(component.to_string(), RefOr::T(schema));
            continue;
        }
        let Some(item) = openapi.paths.paths.get_mut(path) else { panic!("{path} is not in the document") };
        let op = match method {
            "get" => item.get.as_mut(),
            "put" => item.put.as_mut(),
            "post" => item.post.as_mut(),
            _ => item.delete.as_mut(),
        }
        .unwrap_or_else(|| panic!("{method} {path} is not in the document"));
        if name == "body" {
            let body = op.request_body.get_or_insert_with(Default::default);
            body.content.insert("application/json".into(), Content::new(Some(RefOr::T(schema))));
            continue;
        }
        let param = op
            .parameters
            .iter_mut()
            .flatten()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"));
        param.schema = Some(RefOr::T(schema));
    }
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    #[test]
    fn every_strict_schema_is_a_schema_and_the_document_builds() {
        for (path, method, name, schema) in super::strict_schemas() {
            if let Err(err) = serde_json::from_value::<super::Schema>(schema.clone()) {
                panic!("{path} {method} {name}: {err}: {schema}");
            }
        }
        let doc = serde_json::to_value(crate::http::ApiDoc::openapi()).unwrap();
        assert!(doc["paths"]["/api/v1/metrics"]["post"]["responses"]["413"].is_object());
    }

    /// OpenAPI requires unique operation ids (code generators key on them); handler names
    /// repeat across modules, so repeated ones are made from method and path.
    #[test]
    fn operation_ids_are_unique() {
        let doc = serde_json::to_value(crate::http::ApiDoc::openapi()).unwrap();
        let mut ids = std::collections::HashMap::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if let Some(id) = op["operationId"].as_str()
                    && let Some(other) = ids.insert(id.to_string(), format!("{method} {path}"))
                {
                    panic!("operationId {id} of {method} {path} and of {other}");
                }
            }
        }
        assert_eq!(ids.get("get_api_v1_rules_by_name").map(String::as_str), Some("get /api/v1/rules/{name}"));
        assert_eq!(ids.get("get_metrics").map(String::as_str), Some("get /metrics"));
        assert_eq!(ids.get("remote_write").map(String::as_str), Some("post /api/v1/write"), "unique ones stay");
    }
}
