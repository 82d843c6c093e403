//! `Ingestor` against a real SQLite store and writer.

use std::time::Duration;

use super::*;
use crate::pipeline::WriterConfig;
use crate::storage::open;

async fn ingestor(dir: &std::path::Path) -> (Ingestor, DynStore, i64, Telemetry) {
    let store = open(&format!("sqlite://{}", dir.join("m.db").display()), false).await.unwrap();
    store.migrate().await.unwrap();
    let tenant = store.create_tenant("acme", None).await.unwrap();
    let telemetry = Telemetry::new();
    let config = WriterConfig { queue_capacity: 1000, max_group_samples: 1000, dedupe_window: Duration::from_secs(60) };
    let (writer, _task) = Writer::start(store.clone(), config, telemetry.clone(), vec![]);
    let (_, shutdown) = watch::channel(false);
    let limits = Limits { max_batch_samples: 100, ..Limits::default() };
    (Ingestor::new(store.clone(), writer, limits, telemetry.clone(), None, 1024, shutdown), store, tenant.id, telemetry)
}

fn message(topic: &str, payload: &str) -> Inbound {
    Inbound { topic: topic.into(), payload: Bytes::copy_from_slice(payload.as_bytes()) }
}

fn dropped(telemetry: &Telemetry, source: Source, reason: &'static str) -> u64 {
    telemetry.mqtt_dropped.get_or_create(&MqttDropLabels { source: source.as_str(), reason }).get()
}

#[tokio::test]
async fn good_messages_are_committed_and_bad_ones_counted_by_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (ingestor, store, tenant_id, telemetry) = ingestor(dir.path()).await;
    let messages = vec![
        message("metrics/acme/cpu", "1"),
        message("metrics/acme", r#"[{"metric":"cpu","value":2,"ts":5},{"metric":"mem","value":3}]"#),
        message("metrics/ghost/cpu", "1"),
        message("metrics/acme/cpu", "x"),
        message("metrics/acme/cpu", &"1".repeat(2000)),
        message("other/acme/cpu", "1"),
    ];
    ingestor.ingest(Source::Bridge, Publisher::AnyTenant, &messages).await.unwrap();
    assert_eq!(store.metric_names(tenant_id).await.unwrap(), vec!["cpu", "mem"]);
    for reason in ["unknown_tenant", "malformed", "oversize", "bad_topic"] {
        assert_eq!(dropped(&telemetry, Source::Bridge, reason), 1, "{reason}");
    }
    assert_eq!(telemetry.mqtt_messages.get_or_create(&MqttLabels { source: "bridge" }).get(), 6);
}

#[tokio::test]
async fn a_logged_in_client_publishes_only_for_its_own_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let (ingestor, store, tenant_id, telemetry) = ingestor(dir.path()).await;
    let other = store.create_tenant("other", None).await.unwrap();
    let publisher = Publisher::Tenant { id: tenant_id, name: "acme" };
    let messages = vec![message("metrics/other/cpu", "1"), message("metrics/acme/cpu", "2")];
    ingestor.ingest(Source::Embedded, publisher, &messages).await.unwrap();
    assert!(store.metric_names(other.id).await.unwrap().is_empty());
    assert_eq!(store.metric_names(tenant_id).await.unwrap(), vec!["cpu"]);
    assert_eq!(dropped(&telemetry, Source::Embedded, "forbidden_topic"), 1);
}

#[test]
fn the_log_budget_allows_a_few_lines_a_second() {
    let budget = LogBudget::new(3);
    let allowed = (0..10).filter(|_| budget.take()).count();
    assert!((3..=6).contains(&allowed), "{allowed}");
}
