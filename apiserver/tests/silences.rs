//! Silences (issue 23) against the real binary on each database and a real webhook receiver: a
//! silence holds back the notifications of the alerts it matches (their transitions are still
//! recorded, and the alert list says which silence holds them), and when it is expired while
//! the alert still fires, the held-back notification goes out, once.

mod common;

use std::time::{Duration, Instant};

use common::webhook::Receiver;
use common::{Server, send};
use reqwest::StatusCode;
use serde_json::json;

async fn sample(server: &Server, value: f64, host: &str) {
    let body = json!({"metric": "cpu.usage", "value": value, "labels": {"host": host}});
    let (status, answer) = send(server, &server.token, reqwest::Method::POST, "/api/v1/metrics", Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

/// FIRING notifications received for `host`.
fn firing(receiver: &Receiver, host: &str) -> usize {
    receiver.with_hooks(|hooks| {
        hooks.iter().filter(|h| h.json()["state"] == "FIRING" && h.json()["labels"]["host"] == host).count()
    })
}

async fn until(what: &str, timeout: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_silence_holds_back_notifications_and_its_expiry_resumes_them(kind: &str) {
    let receiver = Receiver::start(0, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::on_database(kind, dir.path(), &[]).await;
    let t = server.token.clone();
    let post = reqwest::Method::POST;
    let channel = json!({"name": "ops", "webhook": {"url": receiver.url()}, "sendResolved": true});
    assert_eq!(send(&server, &t, post.clone(), "/api/v1/channels", Some(channel)).await.0, StatusCode::CREATED);
    let rule = json!({"name": "high-cpu", "metric": "cpu.usage", "for": "0s", "channels": ["ops"],
                      "labels": {"team": "a"},
                      "condition": {"aggregation": "last", "op": ">", "threshold": 90}});
    assert_eq!(send(&server, &t, post.clone(), "/api/v1/rules", Some(rule)).await.0, StatusCode::CREATED);

    // Bad silences are refused naming the field; nothing is stored.
    let refused = [
        (json!({"matchers": {}, "endsAt": "now+1h", "comment": "c", "createdBy": "me"}), "matchers"),
        (json!({"matchers": {"host": ""}, "endsAt": "now+1h", "comment": "c", "createdBy": "me"}), "matchers"),
        (json!({"matchers": {"host": "web-1"}, "endsAt": "now-1h", "comment": "c", "createdBy": "me"}), "endsAt"),
        (json!({"matchers": {"host": "web-1"}, "endsAt": "tomorrow", "comment": "c", "createdBy": "me"}), "endsAt"),
        (json!({"matchers": {"host": "web-1"}, "endsAt": "now+1h", "comment": " ", "createdBy": "me"}), "comment"),
        (json!({"matchers": {"host": "web-1"}, "endsAt": "now+1h", "createdBy": "me"}), "comment"),
        (json!({"matchers": {"host": "web-1"}, "endsAt": "now+1h", "comment": "c", "createdBy": "me", "x": 1}), "x"),
    ];
    for (body, field) in refused {
        let (status, problem) = send(&server, &t, post.clone(), "/api/v1/silences", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }

    // Maintenance of web-1 for two hours.
    let silence = json!({"matchers": {"alertname": "high-cpu", "host": "web-1"}, "endsAt": "now+2h",
                         "comment": "replacing a disk", "createdBy": "ops@example.com"});
    let (status, created) = send(&server, &t, post.clone(), "/api/v1/silences", Some(silence)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(created["status"], "active");
    assert_eq!(created["createdBy"], "ops@example.com");
    let ends = created["endsAt"].as_i64().unwrap() - created["startsAt"].as_i64().unwrap();
    assert!((2 * 3600 * 1000 - 5000..=2 * 3600 * 1000).contains(&ends), "now+2h: {created}");
    let (_, listed) = send(&server, &t, reqwest::Method::GET, "/api/v1/silences", None).await;
    assert_eq!(listed["silences"].as_array().unwrap().len(), 1);
    assert_eq!(listed["silences"][0]["id"], id.as_str());

    sample(&server, 10.0, "web-1").await;
    sample(&server, 10.0, "web-2").await;
    sample(&server, 99.0, "web-1").await;
    sample(&server, 99.0, "web-2").await;
    until("web-2's FIRING arrives", Duration::from_secs(15), || firing(&receiver, "web-2") == 1).await;
    // Two ticks past web-2: web-1 would have been sent along.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(firing(&receiver, "web-1"), 0, "the silence holds web-1 back");

    // The transition is recorded, and the alert list names the silence.
    let (_, history) = send(&server, &t, reqwest::Method::GET, "/api/v1/alerts/history?rule=high-cpu", None).await;
    assert!(
        history["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|tr| tr["labels"]["host"] == "web-1" && tr["to"] == "FIRING"),
        "{history}"
    );
    let (_, alerts) = send(&server, &t, reqwest::Method::GET, "/api/v1/alerts", None).await;
    let of =
        |host: &str| alerts["alerts"].as_array().unwrap().iter().find(|a| a["labels"]["host"] == host).unwrap().clone();
    assert_eq!(of("web-1")["state"], "FIRING");
    assert_eq!(of("web-1")["silencedBy"], json!([id]));
    assert!(of("web-2").get("silencedBy").is_none(), "{alerts}");

    // Another tenant neither sees nor expires it.
    let other = common::create_tenant(&server, "other").await;
    let (_, theirs) = send(&server, &other, reqwest::Method::GET, "/api/v1/silences", None).await;
    assert_eq!(theirs["silences"], json!([]));
    let path = format!("/api/v1/silences/{id}");
    assert_eq!(send(&server, &other, reqwest::Method::DELETE, &path, None).await.0, StatusCode::NOT_FOUND);

    // Expired while web-1 still fires: its FIRING goes out now, once.
    assert_eq!(send(&server, &t, reqwest::Method::DELETE, &path, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(
        send(&server, &t, reqwest::Method::DELETE, &path, None).await.0,
        StatusCode::NOT_FOUND,
        "already expired"
    );
    until("web-1's held-back FIRING arrives after the expiry", Duration::from_secs(15), || {
        firing(&receiver, "web-1") == 1
    })
    .await;
    let (_, listed) = send(&server, &t, reqwest::Method::GET, "/api/v1/silences", None).await;
    assert_eq!(listed["silences"][0]["status"], "expired");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(firing(&receiver, "web-1"), 1, "sent once");
    assert_eq!(firing(&receiver, "web-2"), 1, "sent once");
    let (_, alerts) = send(&server, &t, reqwest::Method::GET, "/api/v1/alerts", None).await;
    assert!(alerts["alerts"].as_array().unwrap().iter().all(|a| a.get("silencedBy").is_none()), "{alerts}");

    // A silence that starts later holds nothing back yet; resolving after the expiry is sent.
    let later = json!({"matchers": {"host": "web-1"}, "startsAt": "now+1h", "endsAt": "now+2h",
                       "comment": "next window", "createdBy": "ops"});
    let (status, pending) = send(&server, &t, post.clone(), "/api/v1/silences", Some(later)).await;
    assert_eq!(status, StatusCode::CREATED, "{pending}");
    assert_eq!(pending["status"], "pending");
    sample(&server, 10.0, "web-1").await;
    until("web-1's RESOLVED arrives", Duration::from_secs(15), || {
        receiver
            .with_hooks(|h| h.iter().any(|h| h.json()["state"] == "RESOLVED" && h.json()["labels"]["host"] == "web-1"))
    })
    .await;
}

#[tokio::test]
async fn a_silence_holds_back_notifications_and_its_expiry_resumes_them_on_sqlite() {
    a_silence_holds_back_notifications_and_its_expiry_resumes_them("sqlite").await;
}

#[tokio::test]
async fn a_silence_holds_back_notifications_and_its_expiry_resumes_them_on_postgres() {
    a_silence_holds_back_notifications_and_its_expiry_resumes_them("postgres").await;
}

#[tokio::test]
async fn a_silence_holds_back_notifications_and_its_expiry_resumes_them_on_mariadb() {
    a_silence_holds_back_notifications_and_its_expiry_resumes_them("mysql").await;
}

/// `microdash apply` of `yaml` against the database at `url`: (ok, stdout, stderr).
fn apply(dir: &std::path::Path, url: &str, yaml: &str) -> (bool, String, String) {
    let file = dir.join("silence.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["apply", "-f", file.to_str().unwrap()])
        .env("MICRODASH_DATABASE_URL", url)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The tenant's silences as `GET /api/v1/silences` lists them.
async fn listed(server: &Server, token: &str) -> serde_json::Value {
    send(server, token, reqwest::Method::GET, "/api/v1/silences", None).await.1["silences"].clone()
}

fn silence_yaml(ends_at: &str) -> String {
    format!(
        "apiVersion: microdash.io/v1alpha1\nkind: Silence\nmetadata: {{name: disk-swap}}\nspec:\n  tenant: default\n  \
         matchers: {{alertname: high-cpu, host: web-1}}\n  endsAt: {ends_at}\n  comment: replacing a disk\n  \
         createdBy: ops@example.com\n"
    )
}

/// Issue 23: a `kind: Silence` document applied twice is one silence; a changed `endsAt` updates
/// that silence (same id), and the silence holds back a breach until the end the file gives.
async fn an_applied_silence_is_one_silence_updated_in_place_that_mutes_a_breach(kind: &str) {
    let receiver = Receiver::start(0, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let url = match kind {
        "sqlite" => format!("sqlite://{}", dir.path().join("microdash.db").display()),
        other => common::fresh_database_url(other).await,
    };
    let env: Vec<(&str, &str)> =
        if kind == "sqlite" { Vec::new() } else { vec![("MICRODASH_DATABASE_URL", url.as_str())] };
    let server = Server::start_with(dir.path(), &env);
    let t = server.token.clone();
    let post = reqwest::Method::POST;
    let channel = json!({"name": "ops", "webhook": {"url": receiver.url()}, "sendResolved": true});
    assert_eq!(send(&server, &t, post.clone(), "/api/v1/channels", Some(channel)).await.0, StatusCode::CREATED);
    let rule = json!({"name": "high-cpu", "metric": "cpu.usage", "for": "0s", "channels": ["ops"],
                      "condition": {"aggregation": "last", "op": ">", "threshold": 90}});
    assert_eq!(send(&server, &t, post.clone(), "/api/v1/rules", Some(rule)).await.0, StatusCode::CREATED);

    let ends = common::now_ms() + 2 * 3600 * 1000;
    let (ok, out, err) = apply(dir.path(), &url, &silence_yaml(&ends.to_string()));
    assert!(ok, "{err}");
    assert_eq!(out, "silence/disk-swap (tenant default) created\n");
    let (ok, out, err) = apply(dir.path(), &url, &silence_yaml(&ends.to_string()));
    assert!(ok, "{err}");
    assert_eq!(out, "silence/disk-swap (tenant default) unchanged\n", "the same document again");
    let first = listed(&server, &t).await;
    assert_eq!(first.as_array().unwrap().len(), 1, "{first}");
    assert_eq!(first[0]["name"], "disk-swap");
    assert_eq!(first[0]["endsAt"], ends);
    assert_eq!(first[0]["status"], "active");
    let id = first[0]["id"].as_str().unwrap().to_string();

    // A changed end updates that silence: still one, the same id.
    let later = ends + 3600 * 1000;
    let (ok, out, err) = apply(dir.path(), &url, &silence_yaml(&later.to_string()));
    assert!(ok, "{err}");
    assert_eq!(out, "silence/disk-swap (tenant default) updated\n");
    let second = listed(&server, &t).await;
    assert_eq!(second.as_array().unwrap().len(), 1, "{second}");
    assert_eq!((second[0]["id"].as_str(), second[0]["endsAt"].as_i64()), (Some(id.as_str()), Some(later)));
    assert_eq!(second[0]["startsAt"], first[0]["startsAt"], "an omitted start keeps the running silence's");
    let path = "/api/v1/silences/by-name/disk-swap";
    let (status, by_name) = send(&server, &t, reqwest::Method::GET, path, None).await;
    assert_eq!((status, by_name["id"].as_str()), (StatusCode::OK, Some(id.as_str())), "{by_name}");

    // The running server picks the file's silence up (it checks for changes every two seconds).
    tokio::time::sleep(Duration::from_secs(5)).await;
    sample(&server, 10.0, "web-1").await;
    sample(&server, 10.0, "web-2").await;
    sample(&server, 99.0, "web-1").await;
    sample(&server, 99.0, "web-2").await;
    until("web-2's FIRING arrives", Duration::from_secs(15), || firing(&receiver, "web-2") == 1).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(firing(&receiver, "web-1"), 0, "the applied silence holds web-1 back");
    let (_, alerts) = send(&server, &t, reqwest::Method::GET, "/api/v1/alerts", None).await;
    let web1 = alerts["alerts"].as_array().unwrap().iter().find(|a| a["labels"]["host"] == "web-1").unwrap().clone();
    assert_eq!(web1["silencedBy"], json!([id]), "{alerts}");

    // A file that ends it in three seconds: the same silence again, and web-1's FIRING goes out then, once.
    let (ok, out, err) = apply(dir.path(), &url, &silence_yaml("now+3s"));
    assert!(ok, "{err}");
    assert_eq!(out, "silence/disk-swap (tenant default) updated\n");
    assert_eq!(listed(&server, &t).await.as_array().unwrap().len(), 1);
    until("web-1's held-back FIRING after the silence's new end", Duration::from_secs(20), || {
        firing(&receiver, "web-1") == 1
    })
    .await;
    let ended = listed(&server, &t).await;
    assert_eq!((ended[0]["id"].as_str(), ended[0]["status"].as_str()), (Some(id.as_str()), Some("expired")));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(firing(&receiver, "web-1"), 1, "sent once");

    // A silence that ended cannot be written with an end in the past; the file changes nothing.
    let (ok, _, err) = apply(dir.path(), &url, &silence_yaml(&(common::now_ms() - 1000).to_string()));
    assert!(!ok);
    assert!(err.contains("nothing was applied") && err.contains("Silence disk-swap: spec.endsAt"), "{err}");
}

#[tokio::test]
async fn an_applied_silence_is_one_silence_updated_in_place_that_mutes_a_breach_on_sqlite() {
    an_applied_silence_is_one_silence_updated_in_place_that_mutes_a_breach("sqlite").await;
}

#[tokio::test]
async fn an_applied_silence_is_one_silence_updated_in_place_that_mutes_a_breach_on_postgres() {
    an_applied_silence_is_one_silence_updated_in_place_that_mutes_a_breach("postgres").await;
}

#[tokio::test]
async fn an_applied_silence_is_one_silence_updated_in_place_that_mutes_a_breach_on_mariadb() {
    an_applied_silence_is_one_silence_updated_in_place_that_mutes_a_breach("mysql").await;
}

/// What the operator's `Silence` resources use: a silence written by name over HTTP is created
/// once and then updated in place or left unchanged; it is read and expired by that name, by
/// its own tenant only.
#[tokio::test]
async fn a_silence_written_by_name_over_http_is_one_silence() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let t = server.token.clone();
    let path = "/api/v1/silences/by-name/team-a.disk-swap";
    let put = reqwest::Method::PUT;
    let ends = common::now_ms() + 3600 * 1000;
    let body = json!({"matchers": {"host": "web-1"}, "endsAt": ends, "comment": "disk", "createdBy": "ops"});
    let (status, created) = send(&server, &t, put.clone(), path, Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "team-a.disk-swap");
    let (status, again) = send(&server, &t, put.clone(), path, Some(body.clone())).await;
    assert_eq!((status, &again), (StatusCode::OK, &created), "unchanged");
    let mut longer = body.clone();
    longer["endsAt"] = json!(ends + 1000);
    longer["tenant"] = json!("default");
    let (status, updated) = send(&server, &t, put.clone(), path, Some(longer)).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!((&updated["id"], updated["endsAt"].as_i64()), (&created["id"], Some(ends + 1000)));
    let (_, listed) = send(&server, &t, reqwest::Method::GET, "/api/v1/silences", None).await;
    assert_eq!(listed["silences"].as_array().unwrap().len(), 1, "{listed}");

    // Refusals name the field: another tenant in the body, a name that is not one, a missing end.
    let mut elsewhere = body.clone();
    elsewhere["tenant"] = json!("other");
    assert_eq!(send(&server, &t, put.clone(), path, Some(elsewhere)).await.1["field"], "tenant");
    let bad_name = "/api/v1/silences/by-name/Disk_Swap";
    assert_eq!(send(&server, &t, put.clone(), bad_name, Some(body.clone())).await.1["field"], "name");
    let mut no_end = body.clone();
    no_end.as_object_mut().unwrap().remove("endsAt");
    assert_eq!(send(&server, &t, put.clone(), path, Some(no_end)).await.1["field"], "endsAt");

    let other = common::create_tenant(&server, "other").await;
    assert_eq!(send(&server, &other, reqwest::Method::GET, path, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(send(&server, &other, reqwest::Method::DELETE, path, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(send(&server, &t, reqwest::Method::DELETE, path, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(send(&server, &t, reqwest::Method::DELETE, path, None).await.0, StatusCode::NOT_FOUND, "ended");
    let (status, expired) = send(&server, &t, reqwest::Method::GET, path, None).await;
    assert_eq!((status, expired["status"].as_str()), (StatusCode::OK, Some("expired")), "{expired}");
}
