//! Tenancy over time, on every backend: ids are never reused, a deleted tenant leaves nothing
//! behind (in bounded chunks), writes of a deleted tenant do not fail anybody else's, and the
//! token lifecycle (list, expiry, revocation, last use, auth events).

use sqlx::Connection;

use super::*;
use crate::domain::TokenHash;
use crate::domain::alerting::{AlertState, Instance, Transition};
use crate::storage::alerts::{NewNotification, SpecKind, TransitionWrite};

/// Runs one `SELECT COUNT(*) …` on the database at `url`, outside the store.
async fn count(url: &str, sql: &str) -> i64 {
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
    } else if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::MySqlConnection::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
    }
}

/// Rows anywhere that belong to tenant `id` or to one of its series.
async fn rows_of(url: &str, id: i64, series: &[i64]) -> Vec<(String, i64)> {
    let series = series.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",");
    let mut out = Vec::new();
    for table in [
        "tenants",
        "tokens",
        "series",
        "dedupe",
        "dashboards",
        "alert_rules",
        "notification_channels",
        "alert_instances",
        "alert_transitions",
        "notifications",
    ] {
        let column = if table == "tenants" { "id" } else { "tenant_id" };
        let n = count(url, &format!("SELECT COUNT(*) FROM {table} WHERE {column} = {id}")).await;
        out.push((table.to_string(), n));
    }
    for table in ["samples", "rollup_1m", "rollup_5m"] {
        let n = count(url, &format!("SELECT COUNT(*) FROM {table} WHERE series_id IN ({series})")).await;
        out.push((table.to_string(), n));
    }
    out.retain(|(_, n)| *n > 0);
    out
}

fn query(tenant_id: i64, resolution: Resolution) -> PointQuery {
    PointQuery {
        tenant_id,
        metric: "cpu".into(),
        matchers: Labels::new(),
        from: 0,
        to: 10_000_000,
        step: None,
        resolution,
        agg: Aggregation::Sum,
        max_points: 100_000,
        last_sample_times: false,
    }
}

/// Fills a tenant with a bit of everything it can own; returns its series ids.
async fn populate(store: &DynStore, url: &str, tenant_id: i64) -> Vec<i64> {
    let samples: Vec<Sample> = (0..40)
        .map(|i| s("cpu", &format!("h{}", i % 4), 1_000 + i * 30_000, i as f64, Some(&format!("d{i}"))))
        .collect();
    let out = store.write(&[WriteBatch { tenant_id, samples: &samples }], 2_000_000, 0).await.unwrap();
    assert_eq!(out[0].accepted, 40);
    store.put_dashboard(tenant_id, "main", "{}", 1).await.unwrap();
    store.put_spec(SpecKind::Rule, tenant_id, "hot", "{}", 1, true).await.unwrap();
    store.put_spec(SpecKind::Channel, tenant_id, "hook", "{}", 1, true).await.unwrap();
    let labels = Labels::from([("host".to_string(), "h1".to_string())]);
    let instance = store.upsert_instance(tenant_id, "hot", &labels, &Instance::new(1)).await.unwrap();
    let mut firing = Instance::new(1);
    firing.state = AlertState::Firing;
    let notes = [NewNotification {
        tenant_id,
        channel: "hook".into(),
        instance_id: Some(instance.id),
        rule: Some("hot".into()),
        state: "FIRING".into(),
        idempotency_key: format!("key-{tenant_id}"),
        payload: "{}".into(),
        created_at: 5,
    }];
    store
        .record_transition(TransitionWrite {
            instance_id: instance.id,
            tenant_id,
            rule: "hot",
            labels: &labels,
            instance: &firing,
            seq: 1,
            transition: &Transition { from: AlertState::Ok, to: AlertState::Firing, at: 5, value: Some(1.0) },
            notifications: &notes,
        })
        .await
        .unwrap();
    let series = count(url, &format!("SELECT COUNT(*) FROM series WHERE tenant_id = {tenant_id}")).await;
    assert_eq!(series, 4);
    let max = count(url, &format!("SELECT MAX(id) FROM series WHERE tenant_id = {tenant_id}")).await;
    (max - 3..=max).collect()
}

pub async fn tenancy_suite(store: DynStore, url: &str) {
    store.migrate().await.unwrap();
    // Migrating again changes nothing (the SQLite rebuild is idempotent).
    store.migrate().await.unwrap();
    let keep = store.create_tenant("keep", None).await.unwrap();
    let doomed = store.create_tenant("doomed", None).await.unwrap();
    populate(&store, url, keep.id).await;
    let doomed_series = populate(&store, url, doomed.id).await;
    let token = Token::generate();
    store.create_token(doomed.id, &token.hash(), "mdt_x", &[Scope::Read], None).await.unwrap();
    let session = TokenHash::of("doomed-session");
    let token_id = store.list_tokens(doomed.id).await.unwrap()[0].token_id;
    store.create_session(&session, token_id, i64::MAX).await.unwrap();
    assert!(!rows_of(url, doomed.id, &doomed_series).await.is_empty());
    // Exporters: created, replaced, listed by name, deleted; a tenant's deletion takes its own.
    assert!(store.put_exporter(keep.id, "b", r#"{"endpoint":"http://b"}"#, 1).await.unwrap());
    assert!(store.put_exporter(keep.id, "a", r#"{"endpoint":"http://a"}"#, 1).await.unwrap());
    assert!(!store.put_exporter(keep.id, "a", r#"{"endpoint":"http://a2"}"#, 2).await.unwrap(), "replaced");
    assert!(store.put_exporter(doomed.id, "a", r#"{"endpoint":"http://d"}"#, 1).await.unwrap());
    let kept: Vec<(String, String)> = store.list_exporters(keep.id).await.unwrap();
    assert_eq!(
        kept,
        [
            ("a".to_string(), r#"{"endpoint":"http://a2"}"#.to_string()),
            ("b".into(), r#"{"endpoint":"http://b"}"#.into())
        ]
    );
    assert!(store.delete_exporter(keep.id, "b").await.unwrap());
    assert!(!store.delete_exporter(keep.id, "b").await.unwrap());
    assert_eq!(store.all_exporters().await.unwrap().len(), 2);

    // Deleting hides the tenant at once and revokes its tokens.
    let before = store.last_auth_event().await.unwrap();
    let marked = store.mark_tenant_deleted("doomed").await.unwrap();
    assert_eq!(marked, Some(doomed.id));
    assert!(store.get_tenant("doomed").await.unwrap().is_none());
    assert_eq!(store.list_tenants().await.unwrap().iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["keep"]);
    assert!(store.find_token(&token.hash()).await.unwrap().is_none());
    assert!(store.find_session(&session).await.unwrap().is_none(), "its dashboard sessions end");
    assert!(store.list_tokens(doomed.id).await.unwrap().is_empty());
    assert!(store.list_exporters(doomed.id).await.unwrap().is_empty(), "its exporters stop");
    let all: Vec<(i64, String, String)> =
        store.all_exporters().await.unwrap().into_iter().map(|(id, tenant, name, _)| (id, tenant, name)).collect();
    assert_eq!(all, [(keep.id, "keep".to_string(), "a".to_string())]);
    assert_eq!(store.deleted_tenants().await.unwrap(), vec![doomed.id]);
    let events = store.auth_events_after(before).await.unwrap();
    assert_eq!(
        events.iter().map(|e| (e.tenant_id, e.token_id)).collect::<Vec<_>>(),
        vec![(doomed.id, None)],
        "one event for the deletion"
    );
    assert!(store.mark_tenant_deleted("doomed").await.unwrap().is_none(), "already gone");
    assert!(store.list_specs(SpecKind::Rule, None).await.unwrap().iter().all(|s| s.tenant_id != doomed.id));

    // A group commit with a batch of the deleted tenant stores the others' and fails nobody
    // (before, the foreign key failed the whole group, again and again).
    let late = [s("cpu", "new-host", 9_000, 1.0, None)];
    let other = [s("cpu", "h9", 9_000, 2.0, None)];
    let out = store
        .write(
            &[WriteBatch { tenant_id: doomed.id, samples: &late }, WriteBatch { tenant_id: keep.id, samples: &other }],
            2_000_000,
            0,
        )
        .await
        .expect("a deleted tenant's batch must not fail the group");
    assert!(out[0].tenant_gone && out[0].accepted == 0);
    assert_eq!((out[1].accepted, out[1].tenant_gone), (1, false));

    // The purge goes in bounded chunks, the tenant row last.
    let mut chunks = 0;
    loop {
        let n = store.purge_deleted_tenant(doomed.id, 7).await.unwrap();
        assert!(n <= 7, "a chunk deleted {n} rows");
        if n == 0 {
            break;
        }
        chunks += 1;
        assert!(chunks < 1000, "the purge does not end");
    }
    assert!(chunks >= 10, "40 samples, their rollups and dedupe ids take several chunks of 7: {chunks}");
    assert_eq!(rows_of(url, doomed.id, &doomed_series).await, Vec::<(String, i64)>::new(), "left behind");
    assert!(store.deleted_tenants().await.unwrap().is_empty());

    // The same name again: a new id, new series ids, nothing of the old tenant anywhere.
    let again = store.create_tenant("doomed", None).await.unwrap();
    assert!(again.id > doomed.id, "tenant id {} reused (deleted: {})", again.id, doomed.id);
    let fresh = [s("cpu", "h1", 3_000, 100.0, Some("d1"))];
    let out = store.write(&[WriteBatch { tenant_id: again.id, samples: &fresh }], 2_000_000, 0).await.unwrap();
    assert_eq!(out[0].accepted, 1, "a dedupe id of the deleted tenant does not count");
    let new_series = count(url, &format!("SELECT MAX(id) FROM series WHERE tenant_id = {}", again.id)).await;
    assert!(new_series > *doomed_series.iter().max().unwrap(), "series id {new_series} reused");
    for resolution in [Resolution::Raw, Resolution::OneMinute, Resolution::FiveMinutes] {
        let points = store.query(&query(again.id, resolution)).await.unwrap();
        let total: Vec<(i64, f64)> = points.iter().flat_map(|s| s.points.clone()).collect();
        assert_eq!(total.iter().map(|p| p.1).sum::<f64>(), 100.0, "{resolution:?}: {points:?}");
    }
    assert!(store.list_dashboards(again.id).await.unwrap().is_empty());
    assert!(store.list_instances(Some(again.id)).await.unwrap().is_empty());
    assert!(store.list_specs(SpecKind::Channel, Some(again.id)).await.unwrap().is_empty());
    // The tenant that stayed kept everything.
    let kept = store.query(&query(keep.id, Resolution::Raw)).await.unwrap();
    assert_eq!(kept.iter().map(|s| s.points.len()).sum::<usize>(), 41);
    assert_eq!(store.list_instances(Some(keep.id)).await.unwrap().len(), 1);

    // Deleting the tenant with the largest id and creating one: no reuse either (SQLite
    // handed out max(id) + 1 again).
    let last = store.create_tenant("last", None).await.unwrap();
    assert!(store.delete_tenant("last").await.unwrap());
    let next = store.create_tenant("next", None).await.unwrap();
    assert!(next.id > last.id, "tenant id {} reused", next.id);
}

pub async fn token_suite(store: DynStore) {
    store.migrate().await.unwrap();
    let t = store.create_tenant("tokens", None).await.unwrap();
    let other = store.create_tenant("other", None).await.unwrap();
    let a = Token::generate();
    let b = Token::generate();
    let a_ids = store.create_token(t.id, &a.hash(), &a.display_prefix(), &[Scope::Ingest], None).await.unwrap();
    let b_ids = store.create_token(t.id, &b.hash(), &b.display_prefix(), &Scope::ALL, Some(5_000)).await.unwrap();
    let (a_id, b_id) = (a_ids.token_id, b_ids.token_id);
    // Numbered per tenant: another tenant's tokens do not count.
    let o = Token::generate();
    let o_ids = store.create_token(other.id, &o.hash(), &o.display_prefix(), &[Scope::Read], None).await.unwrap();
    assert_eq!((a_ids.number, b_ids.number, o_ids.number), (1, 2, 1));
    match store.find_token(&b.hash()).await.unwrap() {
        Some(Principal::Tenant { expires_at, token_id, .. }) => assert_eq!((expires_at, token_id), (Some(5_000), b_id)),
        other => panic!("{other:?}"),
    }
    store.touch_tokens(&[(a_id, 1_000), (a_id, 900)]).await.unwrap();
    store.touch_tokens(&[(a_id, 800)]).await.unwrap();
    let list = store.list_tokens(t.id).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        (
            list[0].number,
            list[0].token_id,
            list[0].prefix.as_str(),
            list[0].scopes.clone(),
            list[0].expires_at,
            list[0].last_used_at
        ),
        (1, a_id, a.display_prefix().as_str(), vec![Scope::Ingest], None, Some(1_000))
    );
    assert_eq!((list[1].number, list[1].expires_at, list[1].last_used_at), (2, Some(5_000), None));
    let json = serde_json::to_string(&list).unwrap();
    assert!(!json.contains(&a.expose()[8..]) && !json.contains("hash"), "{json}");
    assert!(json.contains(r#""id":1,"#) && !json.contains("token_id"), "the number is the id shown: {json}");

    // Revoking (by number): another tenant's number 1 is its own token, the owner revokes once;
    // the event (with the token's own id) is there for every process.
    let before = store.last_auth_event().await.unwrap();
    assert_eq!(store.revoke_token(other.id, 2).await.unwrap(), None);
    store.create_session(&TokenHash::of("cookie"), a_id, i64::MAX).await.unwrap();
    assert_eq!(store.revoke_token(t.id, 1).await.unwrap(), Some(a_id));
    assert_eq!(store.revoke_token(t.id, 1).await.unwrap(), None);
    assert!(store.find_token(&a.hash()).await.unwrap().is_none());
    assert!(store.find_token(&o.hash()).await.unwrap().is_some(), "the other tenant's token 1 stays");
    assert!(store.find_session(&TokenHash::of("cookie")).await.unwrap().is_none(), "its sessions end too");
    let events = store.auth_events_after(before).await.unwrap();
    assert_eq!(events.iter().map(|e| (e.tenant_id, e.token_id)).collect::<Vec<_>>(), vec![(t.id, Some(a_id))]);
    assert_eq!(store.last_auth_event().await.unwrap(), events[0].id);
    // Neither ids nor numbers are reused, not even the highest number after its revocation.
    let c = Token::generate();
    let c_ids = store.create_token(t.id, &c.hash(), &c.display_prefix(), &[Scope::Read], None).await.unwrap();
    assert_eq!(c_ids.number, 3);
    assert_eq!(store.revoke_token(t.id, 3).await.unwrap(), Some(c_ids.token_id));
    let d = Token::generate();
    let d_ids = store.create_token(t.id, &d.hash(), &d.display_prefix(), &[Scope::Read], None).await.unwrap();
    assert!(d_ids.token_id > c_ids.token_id, "token id {} reused", d_ids.token_id);
    assert_eq!(d_ids.number, 4, "the revoked number 3 is not given again");
    // Concurrent creations in one tenant take distinct numbers.
    let made = futures_util::future::join_all((0..8).map(|_| {
        let store = store.clone();
        async move {
            let e = Token::generate();
            store.create_token(other.id, &e.hash(), &e.display_prefix(), &[Scope::Read], None).await.unwrap().number
        }
    }))
    .await;
    let mut numbers = made.clone();
    numbers.sort();
    assert_eq!(numbers, (2..10).collect::<Vec<_>>(), "{made:?}");
    assert!(store.prune_auth_events(crate::domain::now_ms() + 1).await.unwrap() >= 2);
    assert!(store.auth_events_after(0).await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_tenancy() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    tenancy_suite(open(&url, false).await.unwrap(), &url).await;
    token_suite(open(&format!("sqlite://{}", dir.path().join("k.db").display()), false).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_tenancy() {
    let url = fresh_url("postgres").await;
    tenancy_suite(open(&url, false).await.unwrap(), &url).await;
    token_suite(fresh_store("postgres").await).await;
}

#[tokio::test]
async fn mariadb_tenancy() {
    let url = fresh_url("mysql").await;
    tenancy_suite(open(&url, false).await.unwrap(), &url).await;
    token_suite(fresh_store("mysql").await).await;
}

/// A database made by the schema before this change (plain `INTEGER PRIMARY KEY`), with the
/// leftovers its tenant deletion left (rollups of deleted series): the rebuild gives
/// AUTOINCREMENT, keeps every row, and hands out no id that a leftover still points at.
#[tokio::test]
async fn sqlite_rebuild_keeps_rows_and_skips_ids_of_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let store = open(&url, false).await.unwrap();
    {
        // The schema as migrations 0001 to 0003 left it.
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let mut before = sqlx::migrate!("../migrations/sqlite");
        before.migrations = before.migrations.iter().filter(|m| m.version < 4).cloned().collect::<Vec<_>>().into();
        before.run_direct(&mut c).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO tenants (id, name, created_at) VALUES (1, 'a', 0), (2, 'b', 0);
             INSERT INTO tokens (id, tenant_id, hash, prefix, scopes, created_at)
                 VALUES (1, 1, x'01', 'p', 'read', 0), (3, 2, x'03', 'p', 'read', 0), (5, 1, x'05', 'p', 'read', 0);
             INSERT INTO series (id, tenant_id, metric, labels, created_at) VALUES (1, 1, 'm', '{}', 0);
             INSERT INTO samples VALUES (1, 0, 1.5);
             INSERT INTO rollup_1m VALUES (1, 0, 1, 1.5, 1.5, 1.5, 1.5, 0), (7, 0, 1, 9, 9, 9, 9, 0);",
        )
        .execute(&mut c)
        .await
        .unwrap();
    }
    store.migrate().await.unwrap();
    let schema = count(&url, "SELECT COUNT(*) FROM sqlite_master WHERE sql LIKE '%AUTOINCREMENT%'").await;
    assert!(schema >= 4, "tenants, tokens, series and auth_events: {schema}");
    assert_eq!(count(&url, "SELECT COUNT(*) FROM tokens WHERE tenant_id = 1").await, 2);
    // Migration 0007 numbered the tokens per tenant, in their order.
    let numbers: Vec<(i64, i64)> = store.list_tokens(1).await.unwrap().iter().map(|t| (t.token_id, t.number)).collect();
    assert_eq!(numbers, [(1, 1), (5, 2)]);
    assert_eq!(store.list_tokens(2).await.unwrap()[0].number, 1);
    let next = Token::generate();
    let ids = store.create_token(1, &next.hash(), &next.display_prefix(), &[Scope::Read], None).await.unwrap();
    assert_eq!(ids.number, 3, "numbering goes on after the migrated tokens");
    assert_eq!(count(&url, "SELECT COUNT(*) FROM samples").await, 1);
    assert_eq!(count(&url, "SELECT COUNT(*) FROM rollup_1m").await, 1, "the orphan rollup row is gone");
    assert!(store.delete_tenant("b").await.unwrap());
    let c = store.create_tenant("c", None).await.unwrap();
    assert!(c.id > 2, "tenant id {} reused", c.id);
    let out =
        store.write(&[WriteBatch { tenant_id: c.id, samples: &[s("m", "x", 0, 1.0, None)] }], 0, 0).await.unwrap();
    assert_eq!(out[0].accepted, 1);
    assert!(count(&url, "SELECT MAX(id) FROM series").await > 7, "series ids skip the leftovers' ids");
}

/// The database file holds every tenant's data: only its owner may read it, and its
/// write-ahead log and shared-memory files too (they were 0644 under the usual umask).
#[cfg(unix)]
#[tokio::test]
async fn sqlite_files_are_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("private.db");
    let store = open(&format!("sqlite://{}", path.display()), false).await.unwrap();
    store.migrate().await.unwrap();
    let t = store.create_tenant("t", None).await.unwrap();
    store.write(&[WriteBatch { tenant_id: t.id, samples: &[s("m", "x", 1, 1.0, None)] }], 0, 0).await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", file.display());
    }
}
