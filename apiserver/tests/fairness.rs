//! Fairness between tenants and bounds under load (issue 15, item 6), against the real binary:
//! a tenant's streams that never read do not hold up another tenant's resume; a tenant holds at
//! most `max_streams_per_tenant` streams and `max_inflight_ingest_bytes_per_tenant` bytes of
//! ingest in flight, others untouched; and 40 concurrent maximum-size bulks keep the server's
//! memory under the documented bound and give it back after the burst.

mod common;

use std::time::{Duration, Instant};

use common::{Server, client, create_tenant, ingest as post, now_ms};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Opens `GET /api/v1/stream`; the answer's head only, the body is not read.
async fn open_stream(server: &Server, token: &str, path: &str, last_id: Option<u64>) -> reqwest::Response {
    let mut request = client().get(server.url(path)).bearer_auth(token);
    if let Some(id) = last_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    request.send().await.unwrap()
}

/// Reads a stream until an event of `kind` arrives; answers its `id:`.
async fn read_until(response: &mut reqwest::Response, kind: &str, within: Duration) -> (u64, String) {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(at) = text.find(&format!("event: {kind}\n")) {
            let rest = &text[at..];
            if let Some(end) = rest.find("\n\n") {
                let block = &rest[..end];
                let id = block.lines().find_map(|l| l.strip_prefix("id: ")).map(|v| v.parse().unwrap()).unwrap_or(0);
                return (id, block.to_string());
            }
        }
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no `{kind}` event within {within:?}; got: {}", &text[..text.len().min(500)]))
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn streams_that_never_read_do_not_hold_up_another_tenants_resume() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let noisy = server.token.clone();
    let quiet = create_tenant(&server, "quiet").await;
    let mut first = open_stream(&server, &noisy, "/api/v1/stream?metric=m", None).await;
    let (noisy_last, _) = read_until(&mut first, "ready", Duration::from_secs(10)).await;
    let mut second = open_stream(&server, &quiet, "/api/v1/stream?metric=q", None).await;
    let (quiet_last, _) = read_until(&mut second, "ready", Duration::from_secs(10)).await;
    drop((first, second));
    // 45 000 samples with long labels (about 12 MB of events) while the noisy tenant's clients
    // are away: more than the socket buffers of a client that does not read take.
    let start = now_ms() - 3_000;
    let padding = "x".repeat(120);
    for part in 0..3 {
        let batch: Vec<Value> = (0..15_000)
            .map(|i| json!({"metric":"m","value":i,"ts":start + i / 10,"labels":{"s":format!("{part}-{}", i % 10),"pad":padding}}))
            .collect();
        assert_eq!(post(&server, &noisy, Value::Array(batch)).await, StatusCode::ACCEPTED);
    }
    assert_eq!(post(&server, &quiet, json!([{"metric":"q","value":42}])).await, StatusCode::ACCEPTED);
    // The restart empties the live buffer: every resume reads its gap from storage.
    server.restart();

    // Four streams of the noisy tenant resume and never read: their backfill waits on them.
    let mut stuck = Vec::new();
    for _ in 0..4 {
        let r = open_stream(&server, &noisy, "/api/v1/stream?metric=m", Some(noisy_last)).await;
        assert_eq!(r.status(), StatusCode::OK);
        stuck.push(r);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The quiet tenant's resume still gets its missed sample from storage.
    let mut resumed = open_stream(&server, &quiet, "/api/v1/stream?metric=q", Some(quiet_last)).await;
    let (_, block) = read_until(&mut resumed, "sample", Duration::from_secs(10)).await;
    assert!(block.contains("42"), "{block}");
    drop(stuck);
}

#[tokio::test]
async fn a_tenant_holds_at_most_its_share_of_streams() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("MICRODASH_MAX_STREAMS_PER_TENANT", "2")]);
    let token = server.token.clone();
    let other = create_tenant(&server, "other").await;
    let one = open_stream(&server, &token, "/api/v1/stream", None).await;
    let two = open_stream(&server, &token, "/api/v1/alerts/stream", None).await;
    assert_eq!((one.status(), two.status()), (StatusCode::OK, StatusCode::OK));
    for path in ["/api/v1/stream", "/api/v1/alerts/stream"] {
        let refused = open_stream(&server, &token, path, None).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert!(refused.headers().contains_key("retry-after"));
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(problem["limit"], "streams", "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains("max_streams_per_tenant"), "{problem}");
    }
    // Another tenant is untouched.
    let theirs = open_stream(&server, &other, "/api/v1/stream", None).await;
    assert_eq!(theirs.status(), StatusCode::OK);
    // A closed stream gives its place back.
    drop(one);
    let start = Instant::now();
    loop {
        let again = open_stream(&server, &token, "/api/v1/stream", None).await;
        if again.status() == StatusCode::OK {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the closed stream's place did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(two);
}

#[tokio::test]
async fn a_tenant_cannot_hold_more_ingest_in_flight_than_its_share() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("MICRODASH_MAX_INFLIGHT_INGEST_BYTES_PER_TENANT", "60000")]);
    let token = server.token.clone();
    let other = create_tenant(&server, "other").await;
    // A slow client: declares a 60 000-byte body (the tenant's whole allowance) and sends
    // only its start.
    let body = json!({"samples": [{"metric":"slow","value":1}]}).to_string();
    let padded = format!("{body}{}", " ".repeat(60_000 - body.len()));
    let address = server.base.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /api/v1/metrics/bulk HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        padded.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&padded.as_bytes()[..1000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The tenant's allowance is taken: 429 naming the limit; another tenant goes on.
    let r = client()
        .post(server.url("/api/v1/metrics/bulk"))
        .bearer_auth(&token)
        .body(json!({"samples":[{"metric":"fast","value":1}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["limit"], "inflight_bytes", "{problem}");
    assert_eq!(post(&server, &other, json!([{"metric":"fast","value":1}])).await, StatusCode::ACCEPTED);

    // The slow request completes and is stored; then the tenant has room again.
    slow.write_all(&padded.as_bytes()[1000..]).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = slow.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert_eq!(post(&server, &token, json!([{"metric":"fast","value":2}])).await, StatusCode::ACCEPTED);
}

/// `VmHWM` (peak) and `VmRSS` of a process, in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> f64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::test]
async fn forty_concurrent_maximum_size_bulks_stay_under_the_memory_bound_and_give_it_back() {
    // Scaled down from the defaults (8 MiB bodies, 64 MiB in flight) by eight, to keep the
    // test short; the bound scales with max_inflight_ingest_bytes.
    const BODY: usize = 1024 * 1024;
    const IN_FLIGHT: usize = 8 * BODY;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &[
            ("MICRODASH_MAX_BODY_BYTES", &BODY.to_string()),
            ("MICRODASH_MAX_INFLIGHT_INGEST_BYTES", &IN_FLIGHT.to_string()),
            // One tenant sends all 40: its own share does not stop it here, the server's bound does.
            ("MICRODASH_MAX_INFLIGHT_INGEST_BYTES_PER_TENANT", &(40 * BODY).to_string()),
            ("MICRODASH_MAX_BATCH_SAMPLES", "100000"),
        ],
    );
    // Warm up (the first requests allocate the server's pools), then measure from there.
    assert_eq!(post(&server, &server.token, json!([{"metric":"warm","value":1}])).await, StatusCode::ACCEPTED);
    let (_, before) = memory_mib(server.pid());

    // A body just under BODY: many small samples, the costliest shape to parse.
    let base = now_ms() - 60_000;
    // Each bulk its own metric (`burstNN`, one width), so none is a duplicate of another.
    let sample = |i: usize| {
        format!(r#"{{"metric":"burstNN","value":{i},"ts":{},"labels":{{"s":"{}"}}}}"#, base + i as i64, i % 50)
    };
    let mut samples = Vec::new();
    let mut size = 20;
    while size + sample(samples.len()).len() + 1 < BODY {
        size += sample(samples.len()).len() + 1;
        samples.push(sample(samples.len()));
    }
    let body = format!(r#"{{"samples":[{}]}}"#, samples.join(","));
    assert!(body.len() <= BODY);
    let bulks: Vec<_> = (0..40)
        .map(|k| {
            let body = body.replace("burstNN", &format!("burst{k:02}"));
            let url = server.url("/api/v1/metrics/bulk");
            let token = server.token.clone();
            tokio::spawn(async move { client().post(url).bearer_auth(token).body(body).send().await.unwrap().status() })
        })
        .collect();
    for bulk in bulks {
        assert_eq!(bulk.await.unwrap(), StatusCode::ACCEPTED);
    }
    let (peak, _) = memory_mib(server.pid());
    // The documented bound (README, "Memory under load"): the idle server + 64 MiB + 24 times
    // the bytes in flight (a body's samples are parsed, queued, written and sent live, each a
    // copy). Measured here: 185 to 222 MiB; with all 40 in flight at once (no bound) 492 MiB.
    let bound = before + 64.0 + 24.0 * (IN_FLIGHT as f64 / 1048576.0);
    assert!(peak < bound, "peak RSS {peak:.0} MiB over the bound {bound:.0} MiB (idle before: {before:.0} MiB)");

    // After the burst the memory goes back to the system.
    let start = Instant::now();
    loop {
        let (_, now) = memory_mib(server.pid());
        if now < before + 64.0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "RSS still {now:.0} MiB 15 s after the burst (idle before: {before:.0} MiB, peak {peak:.0} MiB)"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stored: Value = client()
        .get(server.url("/api/v1/query?metric=burst07&from=0&to=now&resolution=raw"))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let points: usize =
        stored["series"].as_array().unwrap().iter().map(|s| s["points"].as_array().unwrap().len()).sum();
    assert_eq!(points, samples.len(), "every sample of the burst was stored");
}
