//! The Compose file (docker-compose.yml), checked quickly and without containers:
//! - `docker compose config` renders it (the Docker client with the compose plugin that
//!   `scripts/compose-tool.sh` builds from Go modules; `MICRODASH_TEST_DOCKER_CONFIG` points at it),
//!   each profile with the services it should have, hardened;
//! - every microdash service's command and environment pass `microdash serve --check-config`
//!   of the real binary (so a renamed flag or config key breaks this test, not a deployment);
//! - the Mosquitto config and ACL of deploy/compose/mosquitto load in a real `mosquitto` and keep
//!   tenants apart.
//!
//! The stack itself runs in containers in the test command's container step
//! (scripts/compose-test.sh: images built, `docker compose up -d --wait`, the Playwright BDD
//! features of tests/e2e/playwright.stack.config.ts against it).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `docker compose config --format json` of the repository's compose file with `.env.example`,
/// with the given profiles.
fn rendered(profiles: &[&str]) -> Value {
    let docker_config = std::env::var("MICRODASH_TEST_DOCKER_CONFIG").expect(
        "MICRODASH_TEST_DOCKER_CONFIG is not set: build the compose plugin with \
         `export MICRODASH_TEST_DOCKER_CONFIG=$(scripts/compose-tool.sh)` (make test does)",
    );
    let mut command = Command::new("docker");
    command.env("DOCKER_CONFIG", &docker_config).current_dir(repo()).args(["compose", "--env-file", ".env.example"]);
    for p in profiles {
        command.args(["--profile", p]);
    }
    let out = command.args(["config", "--format", "json"]).output().expect("the docker client (Debian: docker.io)");
    assert!(out.status.success(), "docker compose config failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("compose config prints JSON")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

fn environment(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default()
}

#[test]
fn docker_compose_config_renders_the_stack_and_the_embedded_profile() {
    // .env.example turns the `distributed` profile on (COMPOSE_PROFILES).
    let stack = rendered(&[]);
    let services = stack["services"].as_object().unwrap();
    for name in ["mariadb", "redis", "mosquitto", "mosquitto-passwords", "api", "worker", "agent"] {
        assert!(services.contains_key(name), "service {name} is missing");
    }
    assert!(!services.contains_key("microdash"), "the embedded service runs only with its profile");
    // Every long-running service has a healthcheck (the agent's reads its heartbeat file).
    for name in ["mariadb", "redis", "mosquitto", "api", "worker", "agent"] {
        assert!(services[name]["healthcheck"]["test"].is_array(), "{name} has no healthcheck");
    }
    assert_eq!(services["api"]["deploy"]["replicas"], 2, "two api replicas");
    // microdash containers: read-only root filesystem, no capabilities, no privilege escalation.
    for name in ["api", "worker", "agent"] {
        let service = &services[name];
        assert_eq!(service["read_only"], true, "{name}");
        assert_eq!(strings(&service["cap_drop"]), ["ALL"], "{name}");
        assert_eq!(strings(&service["security_opt"]), ["no-new-privileges:true"], "{name}");
    }
    // Start order: the API waits for healthy MariaDB, Redis and Mosquitto.
    for dep in ["mariadb", "redis", "mosquitto"] {
        assert_eq!(services["api"]["depends_on"][dep]["condition"], "service_healthy", "api → {dep}");
    }
    assert_eq!(
        services["mosquitto"]["depends_on"]["mosquitto-passwords"]["condition"],
        "service_completed_successfully"
    );
    assert!(stack["volumes"]["mariadb-data"].is_object() && stack["volumes"]["redis-data"].is_object());

    // `--profile embedded` (over COMPOSE_PROFILES) is the single binary alone, on a named volume.
    let embedded = rendered(&["embedded"]);
    let services = embedded["services"].as_object().unwrap();
    assert_eq!(services.keys().collect::<Vec<_>>(), ["microdash"], "the embedded profile runs the single binary only");
    let volumes = &services["microdash"]["volumes"];
    assert_eq!(volumes[0]["type"], "volume");
    assert_eq!(volumes[0]["source"], "microdash-data");
    assert_eq!(services["microdash"]["read_only"], true);
}

#[test]
fn every_microdash_service_passes_check_config_with_its_command_and_environment() {
    let mut checked = std::collections::BTreeSet::new();
    for profiles in [&[][..], &["embedded"][..]] {
        let stack = rendered(profiles);
        for (name, service) in stack["services"].as_object().unwrap() {
            let image = service["image"].as_str().unwrap_or_default();
            if !image.starts_with("microdash:") || !checked.insert(name.clone()) {
                continue;
            }
            let command = strings(&service["command"]);
            assert_eq!(command.first().map(String::as_str), Some("serve"), "{name}: {command:?}");
            let out = Command::new(common::bin())
                .args(&command)
                .arg("--check-config")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(environment(service))
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "service {name}: `microdash {} --check-config` failed: {}{}",
                command.join(" "),
                String::from_utf8_lossy(&out.stderr),
                stdout
            );
            // The secrets of .env.example reach the server but never its printout.
            for secret in ["replace-with-a-random-admin-token", "replace-with-a-random-password"] {
                assert!(!stdout.contains(secret), "service {name} printed a secret: {stdout}");
            }
            let role = command.iter().position(|a| a == "--role").map(|i| command[i + 1].clone());
            assert!(stdout.contains(&format!("role: {}", role.as_deref().unwrap_or("all"))), "{name}: {stdout}");
        }
    }
    assert_eq!(checked.into_iter().collect::<Vec<_>>(), ["api", "microdash", "worker"]);
}

#[test]
fn the_agent_service_passes_the_agents_check_config() {
    let stack = rendered(&[]);
    let agent = &stack["services"]["agent"];
    let command = strings(&agent["command"]);
    let out = Command::new(agent_bin())
        .args(&command)
        .arg("--check-config")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(environment(agent))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "`microdash-agent {} --check-config` failed: {}{stdout}",
        command.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Mqtt") && stdout.contains("tenant: \"default\""), "{stdout}");
    assert!(!stdout.contains("replace-with-a-random-device-password"), "the token is hidden: {stdout}");
}

/// The compose Mosquitto config with its container paths moved into `dir`.
fn local_mosquitto_config(dir: &Path, port: u16) -> PathBuf {
    let source = repo().join("deploy/compose/mosquitto");
    let conf = std::fs::read_to_string(source.join("mosquitto.conf")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::copy(source.join("acl"), dir.join("acl")).unwrap();
    let passwd = dir.join("passwd");
    for (user, password) in [("microdash", "bridge-pw"), ("default", "device-pw"), ("other", "other-pw")] {
        let mut command = Command::new("mosquitto_passwd");
        if !passwd.exists() {
            command.arg("-c");
        }
        assert!(command.arg("-b").arg(&passwd).args([user, password]).status().unwrap().success());
    }
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let conf = conf
        .replace("listener 1883", &format!("listener {port} 127.0.0.1\nuser {}", user.trim()))
        .replace("/mosquitto/auth/passwd", passwd.to_str().unwrap())
        .replace("/mosquitto/config/acl", dir.join("acl").to_str().unwrap())
        .replace("/mosquitto/data/", &format!("{}/", dir.join("data").display()));
    assert!(!conf.contains(" /mosquitto/"), "a container path is left: {conf}");
    let path = dir.join("mosquitto.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

#[test]
fn the_compose_mosquitto_config_loads_and_keeps_tenants_apart() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let conf = local_mosquitto_config(dir.path(), port);
    let mut broker = Command::new("mosquitto").arg("-c").arg(&conf).spawn().expect("mosquitto (Debian package)");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = broker.try_wait().unwrap() {
            panic!("mosquitto refused the compose config ({status})");
        }
        assert!(std::time::Instant::now() < deadline, "mosquitto did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let p = port.to_string();
    // The bridge user reads every tenant's metrics.
    let reader = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &p,
            "-u",
            "microdash",
            "-P",
            "bridge-pw",
            "-t",
            "metrics/#",
            "-v",
            "-C",
            "2",
            "-W",
            "10",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let publish = |user: &str, password: &str, topic: &str, message: &str| {
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &p, "-u", user, "-P", password, "-q", "1", "-t", topic, "-m", message])
            .status()
            .unwrap()
    };
    assert!(publish("default", "device-pw", "metrics/default/cpu", "1").success());
    // Another tenant's tree: Mosquitto accepts the PUBLISH and drops it (MQTT 3.1.1 has no refusal).
    let _ = publish("other", "other-pw", "metrics/default/cpu", "2");
    assert!(publish("other", "other-pw", "metrics/other/cpu", "3").success());
    // A wrong password is refused outright.
    assert!(!publish("default", "wrong", "metrics/default/cpu", "4").success());
    // It exits after two messages (or after 10 s).
    let out = reader.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines, ["metrics/default/cpu 1", "metrics/other/cpu 3"], "what the bridge user saw");
    let _ = broker.kill();
    let _ = broker.wait();
}
/// The agent binary of this workspace, next to the server's.
fn agent_bin() -> PathBuf {
    let path = Path::new(common::bin()).with_file_name("microdash-agent");
    assert!(path.exists(), "{} is missing: build it with `cargo build -p microdash-agent`", path.display());
    path
}
