//! Black-box tests of resuming the live stream (`GET /api/v1/stream` with `Last-Event-ID`)
//! across a server restart, against the real binary and a real SQLite file.

mod common;

use common::now_ms;

use std::time::Duration;

use common::{Server, client};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post(server: &Server, body: Value) {
    let r = client()
        .post(server.url("/api/v1/metrics/bulk"))
        .bearer_auth(&server.token)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

/// One Server-Sent Event as the stream sent it.
#[derive(Debug)]
struct SseEvent {
    event: String,
    id: Option<u64>,
    data: String,
}

impl SseEvent {
    fn value(&self) -> f64 {
        serde_json::from_str::<Value>(&self.data).unwrap()["value"].as_f64().unwrap()
    }
}

/// Reads `GET /api/v1/stream` event by event (comments and `retry:` skipped).
struct SseReader {
    response: reqwest::Response,
    pending: String,
}

impl SseReader {
    async fn open(server: &Server, query: &str, last_event_id: Option<u64>) -> SseReader {
        let mut request = client().get(server.url(&format!("/api/v1/stream{query}"))).bearer_auth(&server.token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        SseReader { response, pending: String::new() }
    }

    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let mut event = SseEvent { event: "message".into(), id: None, data: String::new() };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        event.data.push_str(v.trim_start());
                    }
                }
                if event.id.is_some() || !event.data.is_empty() {
                    return event;
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .expect("the stream stays open");
            self.pending.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events up to and including the sample with `value`.
    async fn until_value(&mut self, value: f64) -> Vec<SseEvent> {
        let mut seen = Vec::new();
        loop {
            let event = self.next().await;
            let done = event.event == "sample" && event.value() == value;
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn a_stream_resumed_after_a_restart_gets_what_was_committed_meanwhile_in_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let now = now_ms();
    // Seen by the client before it goes away (a minute old, so it is not near the gap).
    let mut stream = SseReader::open(&server, "?metric=resume&match=host=a", None).await;
    post(&server, json!([{"metric":"resume","value":1,"ts":now - 60_000,"labels":{"host":"a"}}])).await;
    let seen = stream.until_value(1.0).await;
    let last_id = seen.last().unwrap().id.expect("sample events carry an id");
    drop(stream);

    // Committed while the client is away, then lost from the live buffer by the restart:
    // only storage has them. Other metrics and label sets are not the stream's.
    post(
        &server,
        json!([
            {"metric":"resume","value":2,"labels":{"host":"a"}},
            {"metric":"resume","value":20,"labels":{"host":"b"}},
            {"metric":"other","value":21,"labels":{"host":"a"}},
        ]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    post(&server, json!([{"metric":"resume","value":3,"labels":{"host":"a"}}])).await;
    server.restart();
    // Committed after the restart, while the client is still away: in the new live buffer.
    post(&server, json!([{"metric":"resume","value":4,"labels":{"host":"a"}}])).await;

    let mut stream = SseReader::open(&server, "?metric=resume&match=host=a", Some(last_id)).await;
    let mut events = stream.until_value(4.0).await;
    // Then live again.
    post(&server, json!([{"metric":"resume","value":5,"labels":{"host":"a"}}])).await;
    events.extend(stream.until_value(5.0).await);

    assert!(events.iter().all(|e| e.event == "sample"), "{events:?}");
    let values: Vec<f64> = events.iter().map(SseEvent::value).collect();
    assert_eq!(values, [2.0, 3.0, 4.0, 5.0], "what was missed, in order, once; then live: {events:?}");
    let ids: Vec<u64> = events.iter().map(|e| e.id.unwrap()).collect();
    assert!(ids[0] > last_id && ids.windows(2).all(|w| w[0] < w[1]), "ids keep increasing: {ids:?} after {last_id}");

    // Resuming from an id inside the caught-up part continues from there. Storage is read by
    // sample time from 5 s before the id, so the sample of that id may come again.
    let mut stream = SseReader::open(&server, "?metric=resume&match=host=a", Some(ids[0])).await;
    let values: Vec<f64> = stream.until_value(5.0).await.iter().map(SseEvent::value).collect();
    let new: Vec<f64> = values.iter().copied().filter(|v| *v != 2.0).collect();
    assert_eq!(new, [3.0, 4.0, 5.0], "{values:?}");
    assert!(values.len() <= 4, "at most the one already seen comes again: {values:?}");
}

#[tokio::test]
async fn a_stream_resumed_from_too_long_ago_gets_a_reset_then_live_samples() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    // An hour ago: longer than what is caught up from storage.
    let an_hour_ago = ((now_ms() - 3_600_000) as u64) << 10;
    let mut stream = SseReader::open(&server, "?metric=m", Some(an_hour_ago)).await;
    let reset = stream.next().await;
    assert_eq!(reset.event, "reset", "{reset:?}");
    assert!(reset.data.contains("away for"), "the reason is given: {reset:?}");
    post(&server, json!([{"metric":"m","value":7}])).await;
    let event = stream.next().await;
    assert_eq!((event.event.as_str(), event.value()), ("sample", 7.0));
    assert!(event.id.unwrap() > reset.id.expect("the reset carries an id to resume from"));
}

#[tokio::test]
async fn a_stream_that_missed_more_samples_than_are_caught_up_gets_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let mut stream = SseReader::open(&server, "", None).await;
    post(&server, json!([{"metric":"m","value":-1}])).await;
    let last_id = stream.until_value(-1.0).await.last().unwrap().id.unwrap();
    drop(stream);
    // 50 050 samples missed (50 series × 1001, in the last two seconds): more than a backfill sends.
    let start = now_ms() - 2000;
    for half in 0..2 {
        let batch: Vec<Value> = (0..25 * 1001)
            .map(|i| json!({"metric":"m","value":i,"ts":start + i / 25,"labels":{"s":format!("{half}-{}", i % 25)}}))
            .collect();
        post(&server, Value::Array(batch)).await;
    }
    server.restart();
    let mut stream = SseReader::open(&server, "", Some(last_id)).await;
    let reset = stream.next().await;
    assert_eq!(reset.event, "reset", "{reset:?}");
    assert!(reset.data.contains("50000"), "{reset:?}");
}
