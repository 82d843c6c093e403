//! systemd unit states, read over D-Bus from the system bus (`org.freedesktop.systemd1`), the
//! coverage of node_exporter's `systemd` collector that a user alerts on: which units failed,
//! how many units are in each state, and whether the system is `running` or `degraded`.
//!
//! "Where present": the collector is on only while the system bus answers. Without a socket
//! at `/run/dbus/system_bus_socket` (with `--root`: `<root>/run/dbus/system_bus_socket`), or
//! with systemd not answering on it, it is off: one line in the log at start (or when it goes
//! away), nothing per collection, and another look every [`RETRY_EVERY`]th collection, which
//! on a host without the socket costs one `stat`. Once connected, the connection is kept and
//! each collection makes two calls on it, at the same time: `ListUnits` and the `SystemState`
//! property.
//!
//! Samples (agent/README.md, "systemd units"):
//! - `systemd.unit_state{name,state,type}`: per unit that passes the filters, one series for
//!   each of the five active states, 1 for the current one (node_exporter's
//!   `node_systemd_unit_state`). `type` is the unit type, the name's suffix.
//! - `systemd.units{state}`: the number of loaded units in each state, all units counted
//!   (the filters only choose the per-unit series), as node_exporter's `node_systemd_units`.
//! - `systemd.system_running`: 1 while the system state is `running`; `systemd.system_state{state}`:
//!   one series per state, 1 for the current one (`systemctl is-system-running`).
//! - `systemd.version{version}`: the manager's version number.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::filter::NameFilter;
use crate::scrape::Scraped;

/// node_exporter's `--collector.systemd.unit-exclude` default, in the agent's unanchored form:
/// automounts, devices, mounts, scopes and slices (hundreds of units of little use) are left out.
pub const DEFAULT_UNIT_EXCLUDE: &str = r"\.(automount|device|mount|scope|slice)$";
/// Where the system bus listens (`/var/run` is a link to `/run`).
pub const SYSTEM_BUS_SOCKET: &str = "run/dbus/system_bus_socket";
/// The active states of a unit, as node_exporter reports them.
pub const UNIT_STATES: [&str; 5] = ["active", "activating", "deactivating", "inactive", "failed"];
/// The manager's `SystemState` values (`systemctl is-system-running`).
pub const SYSTEM_STATES: [&str; 6] = ["initializing", "starting", "running", "degraded", "maintenance", "stopping"];
/// While off, the bus is looked for again every this many collections (a minute at the default
/// 10 s interval).
pub const RETRY_EVERY: u32 = 6;

/// `systemd`, `systemd-unit-include`, `systemd-unit-exclude`.
#[derive(Debug, Clone)]
pub struct SystemdConfig {
    /// `systemd: false` turns the collector off: not even the socket is looked for.
    pub enabled: bool,
    /// Which units get `systemd.unit_state` series.
    pub units: NameFilter,
}

impl Default for SystemdConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            units: NameFilter::new(None, Some(("systemd-unit-exclude", DEFAULT_UNIT_EXCLUDE))).expect("default regex"),
        }
    }
}

/// One entry of `ListUnits`: the unit's name, load state and active state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit<'a> {
    pub name: &'a str,
    /// `loaded`, `not-found` (a unit named in a `Wants=` whose file does not exist), `masked`…
    pub load_state: &'a str,
    pub active_state: &'a str,
}

impl Unit<'_> {
    /// A unit without a file that is not running either (`auditd.service` named by some
    /// `After=`) is only a name: counted, but no series of its own.
    fn is_phantom(&self) -> bool {
        self.load_state == "not-found" && self.active_state == "inactive"
    }
}

/// What one collection read from systemd.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading<'a> {
    pub units: Vec<Unit<'a>>,
    pub system_state: &'a str,
    /// `Version` (`252.39-1~deb12u1`), read once per connection.
    pub version: Option<&'a str>,
}

/// The unit type: what follows the last dot of the name (`service`, `socket`, `timer`).
pub fn unit_type(name: &str) -> &str {
    name.rsplit_once('.').map_or("", |(_, suffix)| suffix)
}

/// The leading number of a version string (`252.39-1~deb12u1` → 252).
fn version_number(version: &str) -> Option<f64> {
    let digits: &str = &version[..version.find(|c: char| !c.is_ascii_digit()).unwrap_or(version.len())];
    digits.parse().ok()
}

/// The samples of one reading (without `host`: the batch adds it).
pub fn samples(reading: &Reading, units: &NameFilter) -> Vec<Scraped> {
    let mut out = Vec::new();
    let mut push = |metric: &str, value: f64, labels: &[(&str, &str)]| {
        let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        out.push(Scraped { metric: metric.to_owned(), value, labels });
    };
    let mut counts: BTreeMap<&str, u32> = UNIT_STATES.iter().map(|s| (*s, 0)).collect();
    for unit in &reading.units {
        *counts.entry(unit.active_state).or_default() += 1;
    }
    for (state, count) in &counts {
        push("systemd.units", f64::from(*count), &[("state", state)]);
    }
    for unit in reading.units.iter().filter(|u| !u.is_phantom() && units.allows(u.name)) {
        let kind = unit_type(unit.name);
        for state in UNIT_STATES {
            let value = if state == unit.active_state { 1.0 } else { 0.0 };
            push("systemd.unit_state", value, &[("name", unit.name), ("state", state), ("type", kind)]);
        }
    }
    push("systemd.system_running", if reading.system_state == "running" { 1.0 } else { 0.0 }, &[]);
    for state in SYSTEM_STATES {
        push("systemd.system_state", if state == reading.system_state { 1.0 } else { 0.0 }, &[("state", state)]);
    }
    if let Some(version) = reading.version
        && let Some(number) = version_number(version)
    {
        push("systemd.version", number, &[("version", version)]);
    }
    out
}

/// The system bus socket the agent looks for: the host's under `--root`.
pub fn bus_socket(root: Option<&Path>) -> PathBuf {
    root.unwrap_or(Path::new("/")).join(SYSTEM_BUS_SOCKET)
}

#[cfg(target_os = "linux")]
pub use bus::SystemdCollector;

/// Elsewhere there is no systemd: always off.
#[cfg(not(target_os = "linux"))]
pub struct SystemdCollector;

#[cfg(not(target_os = "linux"))]
impl SystemdCollector {
    pub fn new(_config: SystemdConfig, _socket: PathBuf, _timeout: Duration) -> Self {
        Self
    }

    pub fn may_collect(&self) -> bool {
        false
    }

    pub async fn collect(&mut self) -> Vec<Scraped> {
        Vec::new()
    }
}

#[cfg(target_os = "linux")]
mod bus {
    use std::path::PathBuf;
    use std::time::Duration;

    use tracing::{debug, info, warn};
    use zbus::zvariant::{ObjectPath, OwnedValue};

    use super::{RETRY_EVERY, Reading, SystemdConfig, Unit, samples};
    use crate::scrape::Scraped;

    const DESTINATION: &str = "org.freedesktop.systemd1";
    const PATH: &str = "/org/freedesktop/systemd1";
    const MANAGER: &str = "org.freedesktop.systemd1.Manager";
    const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

    /// `ListUnits`' `a(ssssssouso)`: name, description, load state, active state, sub state,
    /// followed unit, object path, job id, job type, job path.
    type UnitStatus<'a> =
        (&'a str, &'a str, &'a str, &'a str, &'a str, &'a str, ObjectPath<'a>, u32, &'a str, ObjectPath<'a>);

    enum State {
        /// `systemd: false`.
        Disabled,
        /// No bus (yet): look again when `wait` reaches 0. `said` once the log has said so.
        Off {
            wait: u32,
            said: bool,
        },
        Connected {
            connection: zbus::Connection,
            version: Option<String>,
        },
    }

    /// The D-Bus side: one connection, kept across collections.
    pub struct SystemdCollector {
        config: SystemdConfig,
        socket: PathBuf,
        /// Bounds connecting and each call: a bus that does not answer must not hold up the
        /// collection.
        timeout: Duration,
        state: State,
    }

    impl SystemdCollector {
        pub fn new(config: SystemdConfig, socket: PathBuf, timeout: Duration) -> Self {
            let state = if config.enabled { State::Off { wait: 0, said: false } } else { State::Disabled };
            Self { config, socket, timeout, state }
        }

        /// Whether the next collection talks to the bus (rather than returning at once).
        pub fn may_collect(&self) -> bool {
            match &self.state {
                State::Disabled => false,
                State::Off { wait, .. } => *wait == 0 && self.socket.exists(),
                State::Connected { .. } => true,
            }
        }

        /// One collection's samples; none while off. Never fails: a lost bus turns it off.
        pub async fn collect(&mut self) -> Vec<Scraped> {
            match &mut self.state {
                State::Disabled => return Vec::new(),
                State::Off { wait, .. } if *wait > 0 => {
                    *wait -= 1;
                    return Vec::new();
                }
                State::Off { said, .. } => {
                    let said = *said;
                    if let Err(reason) = self.connect().await {
                        self.turn_off(&reason, said);
                        return Vec::new();
                    }
                }
                State::Connected { .. } => {}
            }
            let State::Connected { connection, version } = &self.state else { unreachable!("connected above") };
            match tokio::time::timeout(self.timeout, read(connection, version.as_deref(), &self.config)).await {
                Ok(Ok(samples)) => samples,
                Ok(Err(error)) => {
                    self.lost(&format!("systemd did not answer on the system bus: {error}"));
                    Vec::new()
                }
                Err(_) => {
                    self.lost(&format!("systemd did not answer on the system bus within {:?}", self.timeout));
                    Vec::new()
                }
            }
        }

        /// A bus that worked stopped answering (dbus or systemd restarted, the host shutting
        /// down): a warning, then the same looks as at start.
        fn lost(&mut self, reason: &str) {
            warn!("systemd unit states off: {reason}; looking again every {RETRY_EVERY} collections.");
            self.state = State::Off { wait: RETRY_EVERY - 1, said: true };
        }

        fn turn_off(&mut self, reason: &str, said: bool) {
            if said {
                debug!(reason, "systemd unit states still unavailable.");
            } else {
                info!(
                    "systemd unit states off: {reason}; looking again every {RETRY_EVERY} collections (systemd: false turns this off)."
                );
            }
            self.state = State::Off { wait: RETRY_EVERY - 1, said: true };
        }

        async fn connect(&mut self) -> Result<(), String> {
            if !self.socket.exists() {
                return Err(format!("no system bus at {}", self.socket.display()));
            }
            let connecting = async {
                let stream = tokio::net::UnixStream::connect(&self.socket).await?;
                let connection =
                    zbus::connection::Builder::unix_stream(stream).method_timeout(self.timeout).build().await?;
                let version: zbus::Result<String> = property(&connection, "Version").await;
                Ok::<_, zbus::Error>((connection, version))
            };
            let (connection, version) = match tokio::time::timeout(self.timeout, connecting).await {
                Ok(Ok(connected)) => connected,
                Ok(Err(error)) => {
                    return Err(format!("cannot use the system bus at {}: {error}", self.socket.display()));
                }
                Err(_) => {
                    return Err(format!(
                        "the system bus at {} did not answer within {:?}",
                        self.socket.display(),
                        self.timeout
                    ));
                }
            };
            // An answer to `Version` is systemd answering; a bus without systemd says
            // `ServiceUnknown` here.
            let version = version.map_err(|error| format!("systemd does not answer on the system bus: {error}"))?;
            info!(version, bus = %self.socket.display(), "systemd unit states on: connected to the system bus.");
            self.state = State::Connected { connection, version: Some(version) };
            Ok(())
        }
    }

    async fn property(connection: &zbus::Connection, name: &str) -> zbus::Result<String> {
        let reply = connection.call_method(Some(DESTINATION), PATH, Some(PROPERTIES), "Get", &(MANAGER, name)).await?;
        let value: OwnedValue = reply.body().deserialize()?;
        String::try_from(value).map_err(zbus::Error::from)
    }

    async fn read(
        connection: &zbus::Connection,
        version: Option<&str>,
        config: &SystemdConfig,
    ) -> zbus::Result<Vec<Scraped>> {
        let list = connection.call_method(Some(DESTINATION), PATH, Some(MANAGER), "ListUnits", &());
        let (list, system_state) = tokio::join!(list, property(connection, "SystemState"));
        let (list, system_state) = (list?, system_state?);
        let body = list.body();
        let units: Vec<UnitStatus> = body.deserialize()?;
        let reading = Reading {
            units: units.iter().map(|u| Unit { name: u.0, load_state: u.2, active_state: u.3 }).collect(),
            system_state: &system_state,
            version,
        };
        Ok(samples(&reading, &config.units))
    }
}

/// How long connecting and each collection's calls may take: at most the interval, and 5 s.
pub fn timeout(interval: Duration) -> Duration {
    interval.min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading<'a>(units: &[(&'a str, &'a str)], system_state: &'a str) -> Reading<'a> {
        Reading {
            units: units.iter().map(|(name, active_state)| Unit { name, load_state: "loaded", active_state }).collect(),
            system_state,
            version: Some("252.39-1~deb12u1"),
        }
    }

    fn find<'a>(samples: &'a [Scraped], metric: &str, labels: &[(&str, &str)]) -> Option<&'a Scraped> {
        samples.iter().find(|s| {
            s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    #[test]
    fn each_unit_has_one_series_per_state_with_1_for_the_current_one() {
        let r =
            reading(&[("broken.service", "failed"), ("cron.service", "active"), ("dbus.socket", "active")], "degraded");
        let out = samples(&r, &SystemdConfig::default().units);
        for (name, current, kind) in [("broken.service", "failed", "service"), ("dbus.socket", "active", "socket")] {
            for state in UNIT_STATES {
                let s = find(&out, "systemd.unit_state", &[("name", name), ("state", state)]).unwrap();
                assert_eq!(s.value, if state == current { 1.0 } else { 0.0 }, "{name} {state}");
                assert_eq!(s.labels["type"], kind);
                assert_eq!(s.labels.len(), 3);
            }
        }
        assert_eq!(out.iter().filter(|s| s.metric == "systemd.unit_state").count(), 15);
        assert_eq!(find(&out, "systemd.system_running", &[]).unwrap().value, 0.0);
        assert_eq!(find(&out, "systemd.system_state", &[("state", "degraded")]).unwrap().value, 1.0);
        assert_eq!(find(&out, "systemd.system_state", &[("state", "running")]).unwrap().value, 0.0);
        assert_eq!(out.iter().filter(|s| s.metric == "systemd.system_state").count(), SYSTEM_STATES.len());
        let version = find(&out, "systemd.version", &[]).unwrap();
        assert_eq!((version.value, version.labels["version"].as_str()), (252.0, "252.39-1~deb12u1"));
    }

    #[test]
    fn counts_cover_every_unit_the_filters_only_choose_the_per_unit_series() {
        let r = reading(
            &[
                ("-.mount", "active"),
                ("dev-sda.device", "active"),
                ("proc-sys-fs-binfmt_misc.automount", "active"),
                ("init.scope", "active"),
                ("system.slice", "active"),
                ("a.service", "failed"),
                ("b.service", "inactive"),
                ("c.timer", "activating"),
                ("d.service", "reloading"),
            ],
            "running",
        );
        let out = samples(&r, &SystemdConfig::default().units);
        let count = |state: &str| find(&out, "systemd.units", &[("state", state)]).map(|s| s.value);
        assert_eq!(count("active"), Some(5.0));
        assert_eq!(count("failed"), Some(1.0));
        assert_eq!(count("inactive"), Some(1.0));
        assert_eq!(count("activating"), Some(1.0));
        assert_eq!(count("deactivating"), Some(0.0), "the five states are always there");
        assert_eq!(count("reloading"), Some(1.0), "a state beyond the five is counted under its own name");
        let names: std::collections::BTreeSet<&str> =
            out.iter().filter(|s| s.metric == "systemd.unit_state").map(|s| s.labels["name"].as_str()).collect();
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["a.service", "b.service", "c.timer", "d.service"]);
        // A unit in a state beyond the five has all five at 0, as in node_exporter.
        assert!(out.iter().filter(|s| s.labels.get("name").is_some_and(|n| n == "d.service")).all(|s| s.value == 0.0));
        assert_eq!(find(&out, "systemd.system_running", &[]).unwrap().value, 1.0);
    }

    #[test]
    fn units_without_a_file_are_counted_but_get_series_only_when_not_inactive() {
        let mut r = reading(
            &[("auditd.service", "inactive"), ("gone.service", "failed"), ("cron.service", "active")],
            "degraded",
        );
        r.units[0].load_state = "not-found";
        r.units[1].load_state = "not-found";
        let out = samples(&r, &SystemdConfig::default().units);
        assert_eq!(find(&out, "systemd.units", &[("state", "inactive")]).unwrap().value, 1.0);
        assert!(find(&out, "systemd.unit_state", &[("name", "auditd.service")]).is_none());
        assert_eq!(
            find(&out, "systemd.unit_state", &[("name", "gone.service"), ("state", "failed")]).unwrap().value,
            1.0
        );
        assert!(find(&out, "systemd.unit_state", &[("name", "cron.service")]).is_some());
    }

    #[test]
    fn include_and_exclude_choose_units_by_name() {
        let units = NameFilter::new(
            Some(("systemd-unit-include", r"^(nginx|postgres)")),
            Some(("systemd-unit-exclude", r"\.socket$")),
        )
        .unwrap();
        let r =
            reading(&[("nginx.service", "active"), ("nginx.socket", "active"), ("cron.service", "active")], "running");
        let out = samples(&r, &units);
        let names: Vec<&str> =
            out.iter().filter(|s| s.metric == "systemd.unit_state").map(|s| s.labels["name"].as_str()).collect();
        assert_eq!(names, ["nginx.service"; 5]);
        assert_eq!(find(&out, "systemd.units", &[("state", "active")]).unwrap().value, 3.0);
    }

    #[test]
    fn unit_types_and_versions() {
        assert_eq!(unit_type("getty@tty1.service"), "service");
        assert_eq!(unit_type("sys-devices-x.device"), "device");
        assert_eq!(unit_type("noext"), "");
        assert_eq!(version_number("255"), Some(255.0));
        assert_eq!(version_number("252.39-1~deb12u1"), Some(252.0));
        assert_eq!(version_number("v1"), None);
        let out = samples(
            &Reading { units: vec![], system_state: "running", version: Some("unknown") },
            &NameFilter::default(),
        );
        assert!(find(&out, "systemd.version", &[]).is_none());
    }

    #[test]
    fn the_bus_socket_is_the_hosts_under_root() {
        assert_eq!(bus_socket(None), Path::new("/run/dbus/system_bus_socket"));
        assert_eq!(bus_socket(Some(Path::new("/host/root"))), Path::new("/host/root/run/dbus/system_bus_socket"));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn without_a_bus_it_is_off_and_looks_again_every_few_collections() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("system_bus_socket");
        let mut collector = SystemdCollector::new(SystemdConfig::default(), socket.clone(), Duration::from_millis(300));
        assert!(collector.collect().await.is_empty(), "no socket: no samples");
        // A socket appears that accepts connections but never answers: the collector tries it
        // only on its next look, and gives up on it within the timeout.
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        for _ in 1..RETRY_EVERY {
            assert!(collector.collect().await.is_empty());
            assert!(listener.accept().is_err(), "no connection before the next look");
        }
        assert!(collector.may_collect());
        assert!(collector.collect().await.is_empty(), "a bus that does not answer gives nothing");
        assert!(listener.accept().is_ok(), "the next look connected");
        assert!(!collector.may_collect(), "off again until the next look");

        let disabled = SystemdConfig { enabled: false, ..SystemdConfig::default() };
        let mut off = SystemdCollector::new(disabled, socket, Duration::from_millis(300));
        assert!(!off.may_collect());
        assert!(off.collect().await.is_empty());
        assert!(listener.accept().is_err(), "`systemd: false` never connects");
    }
}
