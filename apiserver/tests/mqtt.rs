//! Black-box tests of MQTT ingestion against the real binary: the embedded broker, and the
//! bridge reading a real Mosquitto. Devices are `mosquitto_pub` and rumqttc.

mod common;

use common::now_ms;

use std::time::{Duration, Instant};

use common::mosquitto::{Mosquitto, forget_session, make_certificates, mosquitto_pub, publish_all, shared_broker};
use common::{ADMIN_TOKEN, Server, client, create_tenant};
use rumqttc::{ConnectReturnCode, ConnectionError};
use serde_json::{Value, json};

async fn query(server: &Server, token: &str, path: &str) -> Value {
    let r = client().get(server.url(path)).bearer_auth(token).send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

fn point_count(v: &Value) -> usize {
    v["series"].as_array().unwrap().iter().map(|s| s["points"].as_array().unwrap().len()).sum()
}

/// Polls until the metric has at least `n` points in [from, to], or panics after `within`.
async fn wait_for_points(
    server: &Server,
    token: &str,
    metric: &str,
    from: i64,
    to: i64,
    n: usize,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let v =
            query(server, token, &format!("/api/v1/query?metric={metric}&from={from}&to={to}&resolution=raw")).await;
        if point_count(&v) >= n {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{metric}: {} of {n} points after {within:?}: {v}\nthe server's last log lines:\n{}",
            point_count(&v),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of one line of `/metrics`, e.g. `microdash_mqtt_messages_dropped_total{source="bridge",reason="malformed"}`.
async fn metric(server: &Server, series: &str) -> f64 {
    let text = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

async fn create_token(server: &Server, tenant: &str, scopes: &[&str]) -> String {
    let r = client()
        .post(server.url(&format!("/api/v1/tenants/{tenant}/tokens")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"scopes": scopes}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

fn refused_with(result: Result<(), ConnectionError>) -> ConnectReturnCode {
    match result {
        Err(ConnectionError::ConnectionRefused(code)) => code,
        other => panic!("expected a refused connection, got {other:?}"),
    }
}

#[tokio::test]
async fn embedded_broker_ingests_from_mosquitto_pub_and_rumqttc() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_mqtt(dir.path(), &[]);
    let port = server.mqtt.as_deref().map(port_of).expect("the embedded broker runs");
    let t = server.token.clone();
    let p = port.to_string();
    let before = now_ms();

    // A bare number on metrics/{tenant}/{metric}, a JSON sample on the same, and a bulk body.
    let base = ["-h", "127.0.0.1", "-p", &p, "-u", "default", "-P", &t, "-q", "1"];
    let (ok, err) = mosquitto_pub(&[&base[..], &["-t", "metrics/default/room.temp", "-m", "21.5"]].concat());
    assert!(ok, "{err}");
    let (ok, err) = mosquitto_pub(
        &[&base[..], &["-t", "metrics/default/room.temp", "-m", r#"{"value":22,"ts":1000,"labels":{"room":"b"}}"#]]
            .concat(),
    );
    assert!(ok, "{err}");
    let bulk = json!({"samples":[{"metric":"up","value":1,"ts":2000},{"metric":"up","value":0,"ts":3000,"labels":{"job":"x"}}]});
    let bulk_array = json!([{"metric":"up","value":1,"ts":4000}]);
    publish_all(
        port,
        Some(("default", &t)),
        "device-1",
        vec![
            ("metrics/default".into(), bulk.to_string().into_bytes()),
            ("metrics/default".into(), bulk_array.to_string().into_bytes()),
        ],
    )
    .await
    .unwrap();

    // The PUBACK came after the commit: visible at once, no waiting.
    let now = query(&server, &t, &format!("/api/v1/query?metric=room.temp&from={before}&to={}", now_ms())).await;
    assert_eq!(point_count(&now), 1, "{now}");
    let values: Vec<&Value> =
        now["series"].as_array().unwrap().iter().flat_map(|s| s["points"].as_array().unwrap()).collect();
    assert_eq!(values[0][1], json!(21.5));
    let old = query(&server, &t, "/api/v1/query?metric=room.temp&match=room=b&from=0&to=5000").await;
    assert_eq!(old["series"][0]["points"], json!([[1000, 22.0]]));
    assert_eq!(point_count(&query(&server, &t, "/api/v1/query?metric=up&from=0&to=5000").await), 3);
    assert_eq!(metric(&server, r#"microdash_mqtt_messages_total{source="embedded"}"#).await, 4.0);
}

#[tokio::test]
async fn a_client_of_tenant_b_cannot_publish_into_tenant_a() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_mqtt(dir.path(), &[]);
    let port = server.mqtt.as_deref().map(port_of).unwrap();
    let token_b = create_token_for_new_tenant(&server, "team-b").await;

    // Logged in as team-b, publishing into default: acknowledged (MQTT 3.1.1 has no negative
    // PUBACK), dropped and counted; team-b's own topic works on the same connection.
    publish_all(
        port,
        Some(("team-b", &token_b)),
        "b-1",
        vec![
            ("metrics/default/stolen".into(), b"1".to_vec()),
            ("metrics/default".into(), br#"{"metric":"stolen","value":2}"#.to_vec()),
            ("metrics/team-b/own".into(), b"3".to_vec()),
        ],
    )
    .await
    .unwrap();
    let (ok, _) = mosquitto_pub(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-u",
        "team-b",
        "-P",
        &token_b,
        "-q",
        "1",
        "-t",
        "metrics/default/stolen",
        "-m",
        "4",
    ]);
    assert!(ok);
    let a = query(&server, &server.token, "/api/v1/metrics").await;
    assert_eq!(a, json!({"metrics":[]}), "nothing reached tenant default");
    let b = query(&server, &token_b, "/api/v1/metrics").await;
    assert_eq!(b, json!({"metrics":["own"]}));
    assert_eq!(
        metric(&server, r#"microdash_mqtt_messages_dropped_total{source="embedded",reason="forbidden_topic"}"#).await,
        3.0
    );

    // Claiming to be default with team-b's token, a wrong password, no password, a read-only
    // token: all refused at CONNECT.
    let read_only = create_token(&server, "team-b", &["read"]).await;
    let one = || vec![("metrics/default/x".to_string(), b"1".to_vec())];
    assert_eq!(
        refused_with(publish_all(port, Some(("default", &token_b)), "x1", one()).await),
        ConnectReturnCode::NotAuthorized
    );
    assert_eq!(
        refused_with(publish_all(port, Some(("default", "mdt_wrong")), "x2", one()).await),
        ConnectReturnCode::BadUserNamePassword
    );
    assert_eq!(refused_with(publish_all(port, None, "x3", one()).await), ConnectReturnCode::BadUserNamePassword);
    assert_eq!(
        refused_with(publish_all(port, Some(("team-b", &read_only)), "x4", one()).await),
        ConnectReturnCode::NotAuthorized
    );
    let (ok, err) = mosquitto_pub(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-u",
        "default",
        "-P",
        &token_b,
        "-t",
        "metrics/default/x",
        "-m",
        "1",
    ]);
    assert!(!ok && err.to_lowercase().contains("not authori"), "{err}");
    assert_eq!(metric(&server, r#"microdash_mqtt_connections_refused_total{reason="not_authorized"}"#).await, 3.0);
    assert_eq!(query(&server, &server.token, "/api/v1/metrics").await, json!({"metrics":[]}));
}

async fn create_token_for_new_tenant(server: &Server, name: &str) -> String {
    create_tenant(server, name).await
}

#[tokio::test]
async fn garbage_on_the_embedded_broker_is_counted_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_mqtt(dir.path(), &[("MICRODASH_MAX_BODY_BYTES", "2048")]);
    let port = server.mqtt.as_deref().map(port_of).unwrap();
    let t = server.token.clone();
    let mut messages: Vec<(String, Vec<u8>)> = vec![
        ("metrics/default/temp".into(), b"warm".to_vec()),
        ("metrics/default/temp".into(), b"NaN".to_vec()),
        ("metrics/default".into(), b"{\"samples\":[{\"metric\":".to_vec()),
        ("metrics/default/a/b".into(), b"1".to_vec()),
        ("metrics/default/temp".into(), vec![b'7'; 5000]),
        ("metrics/default".into(), vec![0xff, 0xfe, 0x00]),
    ];
    for i in 0..20 {
        messages.push(("metrics/default/temp".into(), format!(r#"{{"value":{i},"ts":{}}}"#, 1000 + i).into_bytes()));
    }
    // A message far over the packet limit: skipped while it streams in, acknowledged, counted.
    messages.push(("metrics/default/temp".into(), vec![b'1'; 200_000]));
    messages.push(("metrics/default/temp".into(), br#"{"value":99,"ts":5000}"#.to_vec()));
    publish_all(port, Some(("default", &t)), "noisy", messages).await.unwrap();

    let v = query(&server, &t, "/api/v1/query?metric=temp&from=0&to=10000").await;
    assert_eq!(point_count(&v), 21, "{v}");
    for (reason, n) in [("malformed", 3.0), ("invalid_sample", 1.0), ("bad_topic", 1.0), ("oversize", 2.0)] {
        let line = format!(r#"microdash_mqtt_messages_dropped_total{{source="embedded",reason="{reason}"}}"#);
        assert_eq!(metric(&server, &line).await, n, "{reason}");
    }
}

#[tokio::test]
async fn a_puback_from_the_embedded_broker_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with_mqtt(dir.path(), &[]);
    let port = server.mqtt.as_deref().map(port_of).unwrap();
    let t = server.token.clone();
    let messages = (0..200)
        .map(|i| ("metrics/default/d".to_string(), format!(r#"{{"value":{i},"ts":{i}}}"#).into_bytes()))
        .collect();
    publish_all(port, Some(("default", &t)), "durable", messages).await.unwrap();
    server.kill9();
    server.restart();
    assert_eq!(point_count(&query(&server, &t, "/api/v1/query?metric=d&from=0&to=1000").await), 200);
}

#[tokio::test]
async fn the_bridge_reads_mosquitto_and_survives_garbage() {
    let broker = shared_broker();
    let dir = tempfile::tempdir().unwrap();
    // A client id of its own, so a leftover session of another run cannot take messages.
    let client_id = format!("microdash-test-{}", std::process::id());
    let url = format!("mqtt://{broker}");
    let server =
        Server::start_with(dir.path(), &[("MICRODASH_MQTT_URL", &url), ("MICRODASH_MQTT_CLIENT_ID", &client_id)]);
    let t = server.token.clone();
    let port: u16 = port_of(&broker);
    wait_until_connected(&server).await;

    let p = port.to_string();
    let pubq = |topic: &str, payload: &str| {
        let (ok, err) = mosquitto_pub(&["-h", "127.0.0.1", "-p", &p, "-q", "1", "-t", topic, "-m", payload]);
        assert!(ok, "{err}");
    };
    pubq("metrics/default/bridge.temp", "1.5");
    pubq("metrics/default/bridge.temp", "not a number");
    pubq("metrics/nosuchtenant/bridge.temp", "2");
    pubq("metrics/default", "{\"samples\":[{\"metric\":\"bridge.temp\",\"value\":3,\"ts\":1000}]}");
    pubq("metrics/default", "[{\"metric\":\"bridge.temp\",\"value\":\"x\"}]");
    pubq("metrics/default/bridge.temp", r#"{"value":4,"ts":2000}"#);
    let messages = (0..100)
        .map(|i| {
            ("metrics/default/bridge.seq".to_string(), format!(r#"{{"value":{i},"ts":{}}}"#, 10_000 + i).into_bytes())
        })
        .collect();
    publish_all(port, None, &format!("{client_id}-device"), messages).await.unwrap();

    wait_for_points(&server, &t, "bridge.seq", 0, 20_000, 100, Duration::from_secs(20)).await;
    wait_for_points(&server, &t, "bridge.temp", 0, now_ms() + 1000, 3, Duration::from_secs(20)).await;
    for (reason, n) in [("malformed", 1.0), ("invalid_sample", 1.0), ("unknown_tenant", 1.0)] {
        let line = format!(r#"microdash_mqtt_messages_dropped_total{{source="bridge",reason="{reason}"}}"#);
        assert_eq!(metric(&server, &line).await, n, "{reason}");
    }
    drop(server);
    forget_session(port, &client_id).await;
}

/// Waits until the bridge reports a connection.
async fn wait_until_connected(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(server, "microdash_mqtt_bridge_connected").await < 1.0 {
        assert!(Instant::now() < deadline, "the bridge did not connect and subscribe");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_mosquitto_restart_during_a_publish_stream_loses_no_qos1_message() {
    // An ordinary subscription: Mosquitto restores it from its persistence file, so even what
    // devices publish before the bridge is back is queued for it.
    restart_during_a_publish_stream(false).await;
}

#[tokio::test]
async fn with_a_shared_subscription_a_mosquitto_restart_loses_nothing_the_broker_routed_to_the_bridge() {
    // Mosquitto 2.0 does not restore shared subscriptions: what is published after its restart
    // and before the bridge subscribes again has no subscriber and is dropped by the broker
    // (docs/mqtt.md). So here the device reconnects only once the bridge has; everything
    // routed to the bridge, including what was in flight at the restart, must be stored.
    restart_during_a_publish_stream(true).await;
}

async fn restart_during_a_publish_stream(shared: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(&dir.path().join("mosquitto"), "");
    let port = broker.port;
    let server_dir = dir.path().join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let server = Server::start_with(
        &server_dir,
        &[
            ("MICRODASH_MQTT_URL", &broker.url()),
            ("MICRODASH_MQTT_CLIENT_ID", "restart-test"),
            ("MICRODASH_MQTT_SHARED_SUBSCRIPTION", if shared { "true" } else { "false" }),
        ],
    );
    let t = server.token.clone();
    wait_until_connected(&server).await;

    // A device with a persistent session streams 3000 numbered samples at QoS 1; the broker
    // is restarted (SIGTERM: it saves sessions and queued messages) twice in the middle.
    const N: i64 = 3000;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let progress = sent.clone();
    let metrics_url = server.url("/metrics");
    let restarts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let restarted = restarts.clone();
    let device = tokio::spawn(async move {
        let mut options = rumqttc::MqttOptions::new("restart-device", "127.0.0.1", port);
        options.set_clean_session(false).set_keep_alive(Duration::from_secs(5)).set_inflight(50);
        let (client, mut events) = rumqttc::AsyncClient::new(options, 10);
        let sender = tokio::spawn(async move {
            for i in 0..N {
                let payload = format!(r#"{{"value":{i},"ts":{}}}"#, 100_000 + i);
                client.publish("metrics/default/stream", rumqttc::QoS::AtLeastOnce, false, payload).await.unwrap();
                progress.store(i, std::sync::atomic::Ordering::Relaxed);
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            client
        });
        let mut acked = 0;
        while acked < N {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(_) if shared => {
                    // Wait until the bridge saw this restart and has subscribed again.
                    let restarts = restarted.load(std::sync::atomic::Ordering::SeqCst);
                    while bridge_state(&metrics_url)
                        .await
                        .is_none_or(|(subscribed, errors)| !subscribed || errors < restarts as f64)
                    {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        drop(sender.await.unwrap());
    });
    for at in [N / 3, 2 * N / 3] {
        while sent.load(std::sync::atomic::Ordering::Relaxed) < at {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        restarts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        broker.restart();
    }
    assert!(sent.load(std::sync::atomic::Ordering::Relaxed) < N - 1, "the restarts fell into the stream");
    tokio::time::timeout(Duration::from_secs(60), device).await.expect("the device got every PUBACK").unwrap();
    let v = wait_for_points(&server, &t, "stream", 100_000, 100_000 + N, N as usize, Duration::from_secs(30)).await;
    let mut seen: Vec<i64> =
        v["series"][0]["points"].as_array().unwrap().iter().map(|p| p[0].as_i64().unwrap()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), N as usize);
    assert!(metric(&server, "microdash_mqtt_bridge_connection_errors_total").await >= 2.0);
}

/// Whether the bridge is connected and subscribed, and its connection errors so far.
async fn bridge_state(metrics_url: &str) -> Option<(bool, f64)> {
    let text = client().get(metrics_url).send().await.ok()?.text().await.ok()?;
    let value = |name: &str| -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))?.trim().parse().ok()
    };
    Some((value("microdash_mqtt_bridge_connected")? == 1.0, value("microdash_mqtt_bridge_connection_errors_total")?))
}

/// The ACL example of docs/mqtt.md, as written there.
fn documented_acl() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/mqtt.md")).unwrap();
    let after = doc.split("<!-- mosquitto-acl-example").nth(1).expect("the ACL example marker in docs/mqtt.md");
    let block = after.split("```conf\n").nth(1).unwrap();
    block.split("```").next().unwrap().to_string()
}

fn mosquitto_passwd(file: &std::path::Path, user: &str, password: &str) {
    let status = std::process::Command::new("mosquitto_passwd")
        .arg("-b")
        .arg(file)
        .args([user, password])
        .status()
        .expect("mosquitto_passwd (Debian package mosquitto)");
    assert!(status.success());
}

#[tokio::test]
async fn the_documented_mosquitto_acl_keeps_tenants_apart() {
    let dir = tempfile::tempdir().unwrap();
    let conf_dir = dir.path().join("mosquitto");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let (acl, passwd) = (conf_dir.join("acl"), conf_dir.join("passwd"));
    std::fs::write(&acl, documented_acl()).unwrap();
    std::fs::write(&passwd, "").unwrap();
    for (user, password) in [("microdash", "bridge-pw"), ("default", "default-pw"), ("team-b", "b-pw")] {
        mosquitto_passwd(&passwd, user, password);
    }
    let port = common::mosquitto::free_port();
    let _broker = Mosquitto::start_on(
        &conf_dir,
        port,
        &format!("allow_anonymous false\npassword_file {}\nacl_file {}\n", passwd.display(), acl.display()),
    );

    let server_dir = dir.path().join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let url = format!("mqtt://microdash:bridge-pw@127.0.0.1:{port}");
    let server =
        Server::start_with(&server_dir, &[("MICRODASH_MQTT_URL", &url), ("MICRODASH_MQTT_CLIENT_ID", "acl-test")]);
    let token_b = create_tenant(&server, "team-b").await;
    wait_until_connected(&server).await;

    let p = port.to_string();
    let publish = |user: &str, password: &str, topic: &str, value: &str| {
        mosquitto_pub(&["-h", "127.0.0.1", "-p", &p, "-u", user, "-P", password, "-q", "1", "-t", topic, "-m", value])
    };
    assert!(publish("team-b", "b-pw", "metrics/team-b/own", "1").0);
    assert!(publish("team-b", "b-pw", "metrics/team-b", r#"{"metric":"own2","value":1}"#).0);
    // Mosquitto acknowledges a forbidden QoS 1 publish from a 3.1.1 client and drops it.
    publish("team-b", "b-pw", "metrics/default/stolen", "2");
    assert!(publish("default", "default-pw", "metrics/default/mine", "3").0);
    assert!(!publish("team-b", "wrong", "metrics/team-b/own", "1").0, "a wrong password is refused");

    wait_for_points(&server, &server.token, "mine", 0, now_ms() + 1000, 1, Duration::from_secs(20)).await;
    wait_for_points(&server, &token_b, "own2", 0, now_ms() + 1000, 1, Duration::from_secs(20)).await;
    assert_eq!(query(&server, &server.token, "/api/v1/metrics").await, json!({"metrics":["mine"]}));
    assert_eq!(query(&server, &token_b, "/api/v1/metrics").await, json!({"metrics":["own","own2"]}));
}

#[tokio::test]
async fn the_bridge_speaks_tls_and_verifies_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    make_certificates(&tls);
    let port = common::mosquitto::free_port();
    let plain_port = common::mosquitto::free_port();
    let _broker = Mosquitto::start_on(
        &dir.path().join("mosquitto"),
        port,
        &format!(
            "listener {port} 127.0.0.1\ncertfile {t}/server.crt\nkeyfile {t}/server.key\n\
             listener {plain_port} 127.0.0.1\n",
            t = tls.display()
        ),
    );
    let ca = tls.join("ca.crt");
    let url = format!("mqtts://localhost:{port}");
    let server_dir = dir.path().join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let server = Server::start_with(
        &server_dir,
        &[
            ("MICRODASH_MQTT_URL", &url),
            ("MICRODASH_MQTT_CA_FILE", ca.to_str().unwrap()),
            ("MICRODASH_MQTT_CLIENT_ID", "tls-test"),
        ],
    );
    wait_until_connected(&server).await;
    let (ok, err) = mosquitto_pub(&[
        "-h",
        "127.0.0.1",
        "-p",
        &plain_port.to_string(),
        "-q",
        "1",
        "-t",
        "metrics/default/tls",
        "-m",
        "7",
    ]);
    assert!(ok, "{err}");
    wait_for_points(&server, &server.token, "tls", 0, now_ms() + 1000, 1, Duration::from_secs(20)).await;

    // Without the CA, the broker's certificate is not trusted: no connection.
    let other_dir = dir.path().join("untrusting");
    std::fs::create_dir_all(&other_dir).unwrap();
    let untrusting =
        Server::start_with(&other_dir, &[("MICRODASH_MQTT_URL", &url), ("MICRODASH_MQTT_CLIENT_ID", "tls-test-2")]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&untrusting, "microdash_mqtt_bridge_connection_errors_total").await < 1.0 {
        assert!(Instant::now() < deadline, "no TLS failure was counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&untrusting, "microdash_mqtt_bridge_connected").await, 0.0);
}

/// The database stalls (another process holds SQLite's write lock) while a device streams QoS 1
/// messages: nothing is acknowledged before it is committed, the broker keeps taking what
/// arrives into the next batch meanwhile, and once the lock is gone every message is stored
/// once and acknowledged in the order it was sent.
#[tokio::test]
async fn a_stalled_database_holds_the_pubacks_and_then_commits_every_message_in_order() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
    use sqlx::Connection;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_mqtt(dir.path(), &[]);
    let port = server.mqtt.as_deref().map(port_of).expect("the embedded broker runs");
    let mut lock = sqlx::SqliteConnection::connect(&format!("sqlite://{}", dir.path().join("microdash.db").display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut lock).await.unwrap();

    const MESSAGES: usize = 3000;
    let mut options = MqttOptions::new("stalled-device", "127.0.0.1", port);
    options
        .set_credentials("default", server.token.clone())
        .set_inflight(u16::MAX)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, MESSAGES);
    for i in 0..MESSAGES {
        let payload = json!({"value": i, "ts": i + 1}).to_string();
        client.publish(format!("metrics/default/stall.m{}", i % 10), QoS::AtLeastOnce, false, payload).await.unwrap();
    }
    let (mut sent, mut acked) = (Vec::new(), Vec::new());
    let mut poll = async |sent: &mut Vec<u16>, acked: &mut Vec<u16>, within: Duration| {
        let event = tokio::time::timeout(within, events.poll()).await;
        match event {
            Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => sent.push(pkid),
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => acked.push(ack.pkid),
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(err)) => panic!("the connection broke: {err}"),
        }
    };
    // Stalled: everything goes out, nothing comes back.
    let stalled_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < stalled_until {
        poll(&mut sent, &mut acked, Duration::from_millis(100)).await;
    }
    assert_eq!(sent.len(), MESSAGES, "the device sent every message");
    assert!(acked.is_empty(), "{} PUBACKs before anything could be committed", acked.len());

    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    drop(lock);
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < MESSAGES {
        assert!(Instant::now() < deadline, "only {} of {MESSAGES} acknowledged", acked.len());
        poll(&mut sent, &mut acked, Duration::from_secs(1)).await;
    }
    assert_eq!(acked, sent, "PUBACKs in the order the messages were sent");
    for m in 0..10 {
        let stored = query(&server, &server.token, &format!("/api/v1/query?metric=stall.m{m}&from=0&to=10000")).await;
        assert_eq!(point_count(&stored), MESSAGES / 10, "stall.m{m}: {stored}");
    }
    assert_eq!(metric(&server, "microdash_samples_accepted_total").await, MESSAGES as f64);
}

/// Issue 15, item 3 over MQTT 3.1.1, which has no negative PUBACK: samples of new series past
/// the tenant's cap are acknowledged, dropped and counted per tenant; over the rate, the
/// acknowledgements wait until the samples fit (back-pressure), and nothing is lost.
#[tokio::test]
async fn tenant_limits_hold_on_the_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_mqtt(dir.path(), &[]);
    let port = server.mqtt.as_deref().map(port_of).unwrap();
    let token = create_tenant(&server, "capped").await;
    let r = client()
        .put(server.url("/api/v1/tenants/capped/limits"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"series": 1, "samples_per_second": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let mut messages: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| ("metrics/capped/temp".to_string(), format!(r#"{{"value":{i},"ts":{}}}"#, 1000 + i).into_bytes()))
        .collect();
    messages.insert(3, ("metrics/capped/other".into(), br#"{"value":1,"ts":1000}"#.to_vec()));
    messages
        .push(("metrics/capped".into(), br#"[{"metric":"temp","labels":{"room":"b"},"value":1,"ts":1000}]"#.to_vec()));
    publish_all(port, Some(("capped", &token)), "capped-1", messages).await.unwrap();

    // Every PUBACK came after the commit: what was kept is there now.
    let temp = query(&server, &token, "/api/v1/query?metric=temp&from=0&to=5000&resolution=raw").await;
    assert_eq!(temp["series"].as_array().unwrap().len(), 1, "only the first series: {temp}");
    assert_eq!(point_count(&temp), 12, "{temp}");
    let other = query(&server, &token, "/api/v1/query?metric=other&from=0&to=5000&resolution=raw").await;
    assert_eq!(point_count(&other), 0, "{other}");
    assert_eq!(
        metric(&server, r#"microdash_tenant_limit_refused_samples_total{tenant="capped",limit="series"}"#).await,
        2.0
    );
    // 12 samples at 5/s with a bucket of 5: the acknowledgements had to wait.
    assert!(
        metric(&server, r#"microdash_tenant_limit_delays_total{tenant="capped",limit="samples_per_second"}"#).await
            >= 1.0
    );
}
