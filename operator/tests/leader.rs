//! Leader election with the real binary: of two replicas exactly one acts; when it dies the
//! other takes the lease over. Also `/healthz`, `/readyz` and `/metrics` on the operator.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

struct Replica {
    child: Child,
    port: u16,
}

impl Replica {
    fn start(namespace: &str, name: &str) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_microdash-operator"))
            .env("KUBECONFIG", kubeconfig_path())
            .env("POD_NAME", name)
            .env("POD_NAMESPACE", namespace)
            .env("MICRODASH_OPERATOR_NAMESPACE", namespace)
            .env("MICRODASH_OPERATOR_LISTEN", format!("127.0.0.1:{port}"))
            .env_remove("MICRODASH_SERVER_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Replica { child, port }
    }

    async fn get(&self, path: &str) -> Option<String> {
        let r = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port)).await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.text().await.ok()
    }

    /// `microdash-operator --health` against this replica's port: the image's HEALTHCHECK.
    fn health_check(port: u16) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_microdash-operator"))
            .args(["--health", "--listen", &format!("0.0.0.0:{port}")])
            .env_remove("MICRODASH_OPERATOR_LISTEN")
            .output()
            .unwrap()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn of_two_replicas_one_acts_and_the_other_takes_over_when_it_dies() {
    let client = client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "leader").await;
    let a = Replica::start(&ns, "replica-a");
    let b = Replica::start(&ns, "replica-b");
    let roles = eventually(Duration::from_secs(60), "one leader and one standby", || async {
        let roles = (a.get("/readyz").await, b.get("/readyz").await);
        match (roles.0.as_deref(), roles.1.as_deref()) {
            (Some("leader"), Some("standby")) | (Some("standby"), Some("leader")) => Ok(roles),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(a.get("/healthz").await.as_deref(), Some("ok"));
    let healthy = Replica::health_check(a.port);
    assert!(healthy.status.success(), "{}", String::from_utf8_lossy(&healthy.stderr));
    // Stays so: never both leaders.
    for _ in 0..10 {
        let now = (a.get("/readyz").await, b.get("/readyz").await);
        assert_eq!(now, roles, "the roles changed while both ran");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (leader, standby) = if roles.0.as_deref() == Some("leader") { (a, b) } else { (b, a) };
    let metrics = leader.get("/metrics").await.unwrap();
    assert!(metrics.contains("microdash_operator_leader 1"), "{metrics}");
    let leader_port = leader.port;
    drop(leader);
    // Nothing listens there any more: the healthcheck fails and says where it looked.
    let dead = Replica::health_check(leader_port);
    assert!(!dead.status.success());
    assert!(String::from_utf8_lossy(&dead.stderr).contains(&format!("127.0.0.1:{leader_port}/healthz")));
    eventually(Duration::from_secs(60), "the standby takes the lease over", || async {
        match standby.get("/readyz").await.as_deref() {
            Some("leader") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}
