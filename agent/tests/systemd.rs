//! The systemd collector against a real systemd: a container running systemd as PID 1 (image
//! `microdash-test-systemd:<recipe hash>`, built FROM `microdash-base:bookworm` when missing),
//! the agent binary built here bind-mounted into it. What the agent reports is compared with
//! what `systemctl` says inside the same container. And the other side, on a host without a
//! system bus: the collector is off, says so once, and adds nothing.

#![cfg(target_os = "linux")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{AGENT_BIN, Agent, spooled_timestamps};
use serde_json::Value;

const BASE_IMAGE: &str = "microdash-base:bookworm";
/// A failing unit, a running one, and one started by the test; all in the image.
const RECIPE: &str = r#"FROM microdash-base:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends systemd dbus && rm -rf /var/lib/apt/lists/*
RUN printf '[Service]\nExecStart=/bin/false\n[Install]\nWantedBy=multi-user.target\n' > /etc/systemd/system/md-fails.service \
 && printf '[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n' > /etc/systemd/system/md-runs.service \
 && printf '[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n' > /etc/systemd/system/md-later.service \
 && systemctl enable md-fails.service md-runs.service
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
"#;
const EXCLUDED_TYPES: &[&str] = &["automount", "device", "mount", "scope", "slice"];

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `docker` ({e}): these tests need the Docker engine and its CLI (scripts/docker-engine.sh start)"
        )
    })
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// FNV-1a of the recipe: the image's tag, so a changed recipe builds a new image and an
/// unchanged one is reused.
fn recipe_hash() -> String {
    let hash = RECIPE.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{hash:016x}")
}

/// The test image, built when missing (one apt install, under a minute or two).
fn systemd_image() -> String {
    let image = format!("microdash-test-systemd:{}", recipe_hash());
    if docker(&["image", "inspect", &image]).status.success() {
        return image;
    }
    assert!(
        docker(&["image", "inspect", BASE_IMAGE]).status.success(),
        "the base image {BASE_IMAGE} is missing: make it with `scripts/images.sh --base-only` (the test command does)"
    );
    let mut build = Command::new("docker")
        .args(["build", "-q", "-t", &image, "--label", &format!("io.microdash.test.recipe={}", recipe_hash()), "-"])
        // The legacy builder: the engine's BuildKit needs a buildx plugin this CLI may not have.
        .env("DOCKER_BUILDKIT", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker build");
    use std::io::Write;
    build.stdin.take().unwrap().write_all(RECIPE.as_bytes()).unwrap();
    let out = build.wait_with_output().unwrap();
    assert!(out.status.success(), "building {image} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    image
}

/// A container running systemd, removed when dropped (also when the test panics).
struct Container {
    name: String,
}

impl Container {
    fn start(image: &str) -> Container {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let container = Container { name: format!("microdash-test-systemd-{}-{nanos}", std::process::id()) };
        let agent = format!("{AGENT_BIN}:/usr/local/bin/microdash-agent:ro");
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &container.name,
            // systemd as PID 1 without --privileged (which this machine refuses).
            "--cap-add",
            "ALL",
            "--cap-drop",
            "SYS_RESOURCE",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/tmp",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "-v",
            &agent,
            image,
        ]);
        // Until systemd answers at all, `is-system-running` prints nothing or `offline`.
        let state = container.sh("for i in $(seq 90); do s=$(systemctl is-system-running --wait 2>/dev/null); \
             case $s in running|degraded) echo $s; exit;; esac; sleep 1; done; echo $s");
        assert!(matches!(state.trim(), "running" | "degraded"), "systemd did not finish booting: {state:?}");
        container
    }

    fn sh(&self, script: &str) -> String {
        docker_ok(&["exec", &self.name, "sh", "-c", script])
    }

    /// `microdash-agent --once` inside: its samples, and its log.
    fn agent_once(&self) -> (Vec<Value>, String) {
        let out = docker(&["exec", &self.name, "microdash-agent", "--once", "--host-label", "sd"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let body: Value = serde_json::from_slice(&out.stdout).unwrap();
        (body["samples"].as_array().unwrap().clone(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// `systemctl list-units --all`: unit → (load state, active state).
    fn list_units(&self) -> BTreeMap<String, (String, String)> {
        let units: Vec<Value> = serde_json::from_str(&self.sh("systemctl list-units --all --output=json")).unwrap();
        units
            .iter()
            .map(|u| {
                let field = |k: &str| u[k].as_str().unwrap().to_owned();
                (field("unit"), (field("load"), field("active")))
            })
            .collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

fn systemd_samples(samples: &[Value], metric: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    samples
        .iter()
        .filter(|s| s["metric"] == metric)
        .map(|s| (serde_json::from_value(s["labels"].clone()).unwrap(), s["value"].as_f64().unwrap()))
        .collect()
}

/// unit → its state with value 1, from `systemd.unit_state`.
fn unit_states(samples: &[Value]) -> BTreeMap<String, String> {
    let mut states = BTreeMap::new();
    for (labels, value) in systemd_samples(samples, "systemd.unit_state") {
        let name = labels["name"].clone();
        assert_eq!(labels["type"], name.rsplit_once('.').unwrap().1, "type of {name}");
        let entry = states.entry(name.clone()).or_insert_with(String::new);
        if value == 1.0 {
            assert!(entry.is_empty(), "{name} has two current states");
            *entry = labels["state"].clone();
        }
    }
    states
}

/// Everything the agent says about systemd, checked against `systemctl` in the same container.
fn assert_agrees_with_systemctl(container: &Container, samples: &[Value]) {
    let listed = container.list_units();
    // Counts: every loaded unit, by active state.
    let mut expected: BTreeMap<String, f64> =
        ["active", "activating", "deactivating", "inactive", "failed"].iter().map(|s| ((*s).to_owned(), 0.0)).collect();
    for (_, active) in listed.values() {
        *expected.entry(active.clone()).or_default() += 1.0;
    }
    let counts: BTreeMap<String, f64> =
        systemd_samples(samples, "systemd.units").into_iter().map(|(l, v)| (l["state"].clone(), v)).collect();
    assert_eq!(counts, expected, "systemd.units against systemctl list-units --all");

    // Per-unit series: the units of the listing but the excluded types and the phantoms.
    let reported = unit_states(samples);
    let wanted: BTreeMap<String, String> = listed
        .iter()
        .filter(|(name, _)| !EXCLUDED_TYPES.contains(&name.rsplit_once('.').unwrap().1))
        .filter(|(_, (load, active))| !(load == "not-found" && active == "inactive"))
        .map(|(name, (_, active))| (name.clone(), active.clone()))
        .collect();
    assert_eq!(reported, wanted, "systemd.unit_state against systemctl list-units --all");
    let excluded = listed.keys().filter(|n| EXCLUDED_TYPES.contains(&n.rsplit_once('.').unwrap().1)).count();
    assert!(excluded > 0, "the container has mounts, scopes and slices, and none of them is reported");

    let system_state = container.sh("systemctl is-system-running || true");
    let states = systemd_samples(samples, "systemd.system_state");
    let current: Vec<&str> = states.iter().filter(|(_, v)| *v == 1.0).map(|(l, _)| l["state"].as_str()).collect();
    assert_eq!(current, [system_state.trim()], "systemd.system_state against systemctl is-system-running");
    let running = systemd_samples(samples, "systemd.system_running");
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].1, if system_state.trim() == "running" { 1.0 } else { 0.0 });
}

#[test]
fn against_systemd_in_a_container_the_agent_reports_what_systemctl_says() {
    let container = Container::start(&systemd_image());

    let (samples, log) = container.agent_once();
    assert!(log.contains("systemd unit states on: connected to the system bus."), "{log}");
    let states = unit_states(&samples);
    assert_eq!(states["md-fails.service"], "failed");
    assert_eq!(states["md-runs.service"], "active");
    assert!(!states.contains_key("md-later.service") || states["md-later.service"] == "inactive");
    assert_agrees_with_systemctl(&container, &samples);
    let version = systemd_samples(&samples, "systemd.version");
    let systemctl_version = container.sh("systemctl --version | head -1");
    assert_eq!(version.len(), 1);
    assert!(systemctl_version.contains(&format!("systemd {} (", version[0].1)), "{systemctl_version} vs {version:?}");

    // Changes show in the next collection.
    container.sh("systemctl start md-later.service && systemctl reset-failed md-fails.service");
    let (samples, _) = container.agent_once();
    let states = unit_states(&samples);
    assert_eq!(states["md-later.service"], "active");
    assert_eq!(states["md-fails.service"], "inactive");
    assert_agrees_with_systemctl(&container, &samples);
}

/// The long-running agent inside the container: started while the system bus is down, it is
/// off and says so once; the bus comes up and a later look connects; the one connection then
/// serves every collection, and a stopped unit shows in the next batches. The server address
/// refuses, so every batch stays in the spool, where the test reads it.
#[test]
fn in_a_container_the_running_agent_picks_up_a_bus_that_appears_later_and_keeps_its_connection() {
    let container = Container::start(&systemd_image());
    container.sh("systemctl stop dbus.socket dbus.service");
    container.sh(
        "RUST_LOG=microdash_agent=debug nohup microdash-agent --server http://127.0.0.1:9 --token t --interval 500ms \
         --spool-dir /tmp/spool --host-label sd >/tmp/agent.log 2>&1 &",
    );
    let log = || container.sh("cat /tmp/agent.log");
    let wait_for = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !check() {
            assert!(Instant::now() < deadline, "{what} did not happen within 60 s; agent log:\n{}", log());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("the off line", &|| log().contains("systemd unit states off"));
    // The newest spooled batch's samples.
    let newest = || -> Vec<Value> {
        let name = container.sh("ls /tmp/spool | grep 'json$' | tail -1");
        if name.trim().is_empty() {
            return Vec::new();
        }
        let body: Value = serde_json::from_str(&container.sh(&format!("cat /tmp/spool/{}", name.trim()))).unwrap();
        body["samples"].as_array().unwrap().clone()
    };
    wait_for("a batch", &|| !newest().is_empty());
    assert!(
        newest().iter().all(|s| !s["metric"].as_str().unwrap().starts_with("systemd.")),
        "no bus, no systemd samples"
    );

    container.sh("systemctl start dbus.socket dbus.service");
    wait_for("the connection", &|| log().contains("systemd unit states on"));
    wait_for("a batch with unit states", &|| {
        unit_states(&newest()).get("md-runs.service").is_some_and(|s| s == "active")
    });
    container.sh("systemctl stop md-runs.service");
    wait_for("md-runs inactive in a batch", &|| {
        unit_states(&newest()).get("md-runs.service").is_some_and(|s| s == "inactive")
    });

    let log = log();
    let collections = log.lines().filter(|l| l.contains("Collected.")).count();
    assert!(collections >= 6, "{log}");
    let said = |text: &str| log.lines().filter(|l| l.contains(text)).count();
    assert_eq!(said("systemd unit states on"), 1, "one connection for every collection:\n{log}");
    let off_lines: Vec<&str> =
        log.lines().filter(|l| l.contains("systemd unit states off") && !l.contains("DEBUG")).collect();
    assert_eq!(off_lines.len(), 1, "the off state is said once:\n{log}");
}

/// No system bus (`--root` at an empty directory, whose `run/dbus/system_bus_socket` does not
/// exist): one line at start, no samples, no line per collection; `systemd: false` not even that.
#[tokio::test]
async fn without_a_system_bus_the_collector_is_off_says_so_once_and_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let empty_root = dir.path().join("root");
    std::fs::create_dir(&empty_root).unwrap();
    let root = empty_root.to_str().unwrap();
    let once = Command::new(AGENT_BIN).args(["--once", "--host-label", "nobus", "--root", root]).output().unwrap();
    assert!(once.status.success(), "{}", String::from_utf8_lossy(&once.stderr));
    let body: Value = serde_json::from_slice(&once.stdout).unwrap();
    let metrics: BTreeSet<&str> =
        body["samples"].as_array().unwrap().iter().map(|s| s["metric"].as_str().unwrap()).collect();
    assert!(metrics.contains("cpu.usage") && !metrics.iter().any(|m| m.starts_with("systemd.")), "{metrics:?}");
    let stderr = String::from_utf8_lossy(&once.stderr);
    let socket = empty_root.join("run/dbus/system_bus_socket");
    assert!(stderr.contains(&format!("systemd unit states off: no system bus at {}", socket.display())), "{stderr}");
    let quiet = Command::new(AGENT_BIN).args(["--once", "--root", root, "--systemd", "false"]).output().unwrap();
    assert!(quiet.status.success());
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("systemd"), "systemd: false looks for nothing");

    // Running: many collections, one line. The server address refuses, so every batch stays
    // in the spool, where the test reads it.
    let spool = dir.path().join("spool");
    let mut agent = Agent::start(
        &spool,
        &[
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--interval",
            "200ms",
            "--host-label",
            "nobus",
            "--root",
            root,
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent.collected().len() < 14 {
        assert!(Instant::now() < deadline, "14 collections within 60 s; log:\n{}", agent.log().join("\n"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(agent.terminate().success());
    let loud: Vec<String> = agent.lines_with("systemd").into_iter().filter(|l| !l.contains("DEBUG")).collect();
    assert_eq!(loud.len(), 1, "{loud:#?}");
    assert!(loud[0].contains("INFO") && loud[0].contains("looking again every 6 collections"), "{}", loud[0]);
    // It did look again (a `stat` every 6th collection), quietly.
    assert!(agent.lines_with("systemd unit states still unavailable").len() >= 2, "{:#?}", agent.log());
    assert!(spooled_timestamps(&spool).len() >= 14);
    for entry in std::fs::read_dir(&spool).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let body: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let samples = body["samples"].as_array().unwrap();
            assert!(samples.iter().any(|s| s["metric"] == "cpu.usage"));
            assert!(
                !samples.iter().any(|s| s["metric"].as_str().unwrap().starts_with("systemd.")),
                "{}",
                path.display()
            );
        }
    }
}
