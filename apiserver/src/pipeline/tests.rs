use std::time::Duration;

use sqlx::Connection;

use super::*;
use crate::domain::Labels;
use crate::live::LiveHub;
use crate::storage::{Aggregation, PointQuery, open};

fn samples(n: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| Sample { metric: "m".into(), labels: Labels::new(), ts: i as i64, value: 1.0, dedupe_id: None })
        .collect()
}

/// A real SQLite database held locked by another connection stands in for a slow database.
#[tokio::test]
async fn a_full_queue_refuses_at_once_and_what_it_holds_is_written_later() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let store = open(&url, false).await.unwrap();
    store.migrate().await.unwrap();
    let tenant = store.create_tenant("t", None).await.unwrap();

    let mut blocker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut blocker).await.unwrap();

    let hub = Arc::new(LiveHub::new(16, 16));
    let config = WriterConfig { queue_capacity: 10, max_group_samples: 100, dedupe_window: Duration::from_secs(60) };
    let (writer, task) = Writer::start(store.clone(), config, Telemetry::new(), vec![hub]);
    let first = {
        let writer = writer.clone();
        tokio::spawn(async move { writer.submit(tenant.id, samples(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(writer.depth(), 10);
    assert!(matches!(writer.submit(tenant.id, samples(1)).await, Err(SubmitError::Overloaded)));
    assert!(!first.is_finished(), "no answer before the commit");

    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    let outcome = first.await.unwrap().unwrap();
    assert_eq!(outcome.accepted, 10);
    assert_eq!(writer.depth(), 0);
    let stored = store
        .query(&PointQuery {
            tenant_id: tenant.id,
            metric: "m".into(),
            matchers: Labels::new(),
            from: 0,
            to: 100,
            step: None,
            resolution: crate::storage::Resolution::Raw,
            agg: Aggregation::Avg,
            max_points: 100,
            last_sample_times: false,
        })
        .await
        .unwrap();
    assert_eq!(stored[0].points.len(), 10);

    // Dropping the last handle drains and stops the writer.
    drop(writer);
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_waiting_submit_holds_until_there_is_room_then_commits() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let store = open(&url, false).await.unwrap();
    store.migrate().await.unwrap();
    let tenant = store.create_tenant("t", None).await.unwrap();
    let mut blocker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut blocker).await.unwrap();

    let config = WriterConfig { queue_capacity: 10, max_group_samples: 100, dedupe_window: Duration::from_secs(60) };
    let (writer, _task) = Writer::start(store.clone(), config, Telemetry::new(), vec![]);
    let first = tokio::spawn({
        let writer = writer.clone();
        async move { writer.submit(tenant.id, samples(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = tokio::spawn({
        let writer = writer.clone();
        async move { writer.submit_waiting(tenant.id, samples(5)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "waits for room instead of failing");
    assert!(matches!(writer.submit_waiting(tenant.id, samples(11)).await, Err(SubmitError::Overloaded)));

    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    assert_eq!(first.await.unwrap().unwrap().accepted, 10);
    assert_eq!(waiting.await.unwrap().unwrap().accepted, 5);
}
