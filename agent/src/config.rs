//! Configuration: flags, `MICRODASH_AGENT_*` environment variables and an optional YAML file
//! (`--config`) with the same keys as the flags. Flags win over the environment, the
//! environment over the file, the file over the defaults below.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::filter::{DEFAULT_DISK_EXCLUDE, DEFAULT_FS_EXCLUDE, Filters, NameFilter};
use crate::kube::KubeConfig;
use crate::scrape::Target;
use crate::systemd::{DEFAULT_UNIT_EXCLUDE, SystemdConfig};

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_SPOOL_DIR: &str = "./data/agent-spool";
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_PROC_ROOT: &str = "/proc";
/// sysinfo's shortest meaningful CPU usage window; below it CPU usage would be noise.
pub const MIN_INTERVAL: Duration = sysinfo::MINIMUM_CPU_UPDATE_INTERVAL;

/// Command line. Every option is optional here so that "not given" can fall back to the
/// file; defaults are applied in [`Config::resolve`].
#[derive(Debug, Default, Parser)]
#[command(name = "microdash-agent", version, about)]
pub struct Cli {
    /// microdash server base URL (HTTP mode), e.g. http://microdash:8080.
    #[arg(long, env = "MICRODASH_AGENT_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// Token with `ingest` scope (HTTP and MQTT mode).
    #[arg(long, env = "MICRODASH_AGENT_TOKEN", value_name = "T", hide_env_values = true)]
    pub token: Option<String>,

    /// MQTT broker URL (MQTT mode): mqtt://host[:1883], or mqtts://host[:8883] for TLS.
    #[arg(long, env = "MICRODASH_AGENT_MQTT", value_name = "URL")]
    pub mqtt: Option<String>,

    /// Tenant name (MQTT mode: the MQTT username and the topic `metrics/{tenant}`).
    #[arg(long, env = "MICRODASH_AGENT_TENANT", value_name = "NAME")]
    pub tenant: Option<String>,

    /// Time between collections, e.g. 10s, 1m; at least 200ms [default: 10s].
    #[arg(long, env = "MICRODASH_AGENT_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Option<Duration>,

    /// Where unsent batches wait for the server [default: ./data/agent-spool].
    #[arg(long, env = "MICRODASH_AGENT_SPOOL_DIR", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,

    /// Size bound of the spool; the oldest batches are dropped beyond it. Bytes or a size
    /// such as 64MiB, 500MB [default: 64MiB].
    #[arg(long, env = "MICRODASH_AGENT_SPOOL_MAX_BYTES", value_name = "SIZE", value_parser = parse_bytes)]
    pub spool_max_bytes: Option<u64>,

    /// Value of the `host` label on every sample [default: the hostname; with --root, the
    /// first line of <root>/etc/hostname].
    #[arg(long, env = "MICRODASH_AGENT_HOST_LABEL", value_name = "NAME")]
    pub host_label: Option<String>,

    /// YAML file with the same keys as these flags (kebab-case, e.g. `spool-dir`).
    #[arg(long, env = "MICRODASH_AGENT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Collect once, print the batch as JSON (`{"samples":[...]}`) to stdout and exit.
    #[arg(long)]
    pub once: bool,

    /// Validate flags, environment and file, print the effective configuration (token hidden)
    /// and exit.
    #[arg(long)]
    pub check_config: bool,

    /// Check the agent running with this configuration (a container's HEALTHCHECK): exit 0 when
    /// its last collection, recorded in `<spool-dir>/heartbeat`, is younger than three
    /// intervals (and at least 30 s), 1 otherwise.
    #[arg(long, conflicts_with_all = ["once", "check_config"])]
    pub health: bool,

    /// Where the host's procfs is mounted; read for the mount table and process count
    /// [default: /proc]. See the README for running in a container.
    #[arg(long, env = "MICRODASH_AGENT_PROC_ROOT", value_name = "DIR")]
    pub proc_root: Option<PathBuf>,

    /// Where the host's root filesystem is mounted (e.g. /host/root in a DaemonSet). When
    /// set, the agent reports the host seen from a container: filesystems from the host's
    /// mount table (`<proc-root>/1/mounts`) measured under this directory, network
    /// interfaces of the host's init (`<proc-root>/1/net/dev`), the host's hostname.
    #[arg(long, env = "MICRODASH_AGENT_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// PEM file with the CA certificate(s) to trust for https:// and mqtts:// instead of the
    /// built-in public roots (a private CA or a self-signed broker).
    #[arg(long, env = "MICRODASH_AGENT_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Regex: only block devices matching it get `disk.*` samples [default: all].
    #[arg(long, env = "MICRODASH_AGENT_DISK_INCLUDE", value_name = "REGEX")]
    pub disk_include: Option<String>,

    /// Regex: block devices matching it get no `disk.*` samples [default: partitions, loop,
    /// ram and floppy devices, as node_exporter].
    #[arg(long, env = "MICRODASH_AGENT_DISK_EXCLUDE", value_name = "REGEX")]
    pub disk_exclude: Option<String>,

    /// Regex: only network interfaces matching it get `net.*` samples [default: all].
    #[arg(long, env = "MICRODASH_AGENT_NET_INCLUDE", value_name = "REGEX")]
    pub net_include: Option<String>,

    /// Regex: network interfaces matching it get no `net.*` samples [default: none].
    #[arg(long, env = "MICRODASH_AGENT_NET_EXCLUDE", value_name = "REGEX")]
    pub net_exclude: Option<String>,

    /// Regex: only mount points matching it get `fs.*` samples [default: all].
    #[arg(long, env = "MICRODASH_AGENT_FS_INCLUDE", value_name = "REGEX")]
    pub fs_include: Option<String>,

    /// Regex: mount points matching it get no `fs.*` samples [default: /dev, /proc, /sys and
    /// container runtimes' trees].
    #[arg(long, env = "MICRODASH_AGENT_FS_EXCLUDE", value_name = "REGEX")]
    pub fs_exclude: Option<String>,

    /// systemd unit states over D-Bus where the system bus answers: true or false
    /// [default: true].
    #[arg(long, env = "MICRODASH_AGENT_SYSTEMD", value_name = "BOOL", value_parser = clap::builder::BoolishValueParser::new())]
    pub systemd: Option<bool>,

    /// Regex: only units matching it get `systemd.unit_state` series [default: all].
    #[arg(long, env = "MICRODASH_AGENT_SYSTEMD_UNIT_INCLUDE", value_name = "REGEX")]
    pub systemd_unit_include: Option<String>,

    /// Regex: units matching it get no `systemd.unit_state` series [default: automounts,
    /// devices, mounts, scopes and slices, as node_exporter].
    #[arg(long, env = "MICRODASH_AGENT_SYSTEMD_UNIT_EXCLUDE", value_name = "REGEX")]
    pub systemd_unit_exclude: Option<String>,

    /// A Prometheus or OpenMetrics endpoint to scrape at every collection; repeatable. Its
    /// samples join the batch with `instance` = the target's host:port. Given here, it replaces
    /// the file's `scrape` list. The environment variable takes a comma-separated list.
    #[arg(long = "scrape", env = "MICRODASH_AGENT_SCRAPE", value_name = "URL", value_delimiter = ',')]
    pub scrape: Vec<String>,

    /// On Kubernetes: the node whose annotated pods (`prometheus.io/scrape: "true"`) are
    /// discovered through the API server and scraped; the DaemonSet sets it from
    /// `spec.nodeName`.
    #[arg(long, env = "MICRODASH_AGENT_KUBE_NODE", value_name = "NAME")]
    pub kube_node: Option<String>,

    /// The Kubernetes API server [default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT].
    #[arg(long, env = "MICRODASH_AGENT_KUBE_API", value_name = "URL")]
    pub kube_api: Option<String>,

    /// Bearer token for the API server, read again at every pod listing
    /// [default: /var/run/secrets/kubernetes.io/serviceaccount/token].
    #[arg(long, env = "MICRODASH_AGENT_KUBE_TOKEN_FILE", value_name = "FILE")]
    pub kube_token_file: Option<PathBuf>,

    /// CA certificate(s) of the API server [default: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt].
    #[arg(long, env = "MICRODASH_AGENT_KUBE_CA_FILE", value_name = "FILE")]
    pub kube_ca_file: Option<PathBuf>,
}

/// The `--config` file. Keys are the flag names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub server: Option<String>,
    pub token: Option<String>,
    pub mqtt: Option<String>,
    pub tenant: Option<String>,
    /// A duration string such as `10s`.
    pub interval: Option<String>,
    pub spool_dir: Option<PathBuf>,
    /// Bytes as a number, or a size string such as `64MiB`.
    pub spool_max_bytes: Option<ByteSizeValue>,
    pub host_label: Option<String>,
    pub proc_root: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub disk_include: Option<String>,
    pub disk_exclude: Option<String>,
    pub net_include: Option<String>,
    pub net_exclude: Option<String>,
    pub fs_include: Option<String>,
    pub fs_exclude: Option<String>,
    pub systemd: Option<bool>,
    pub systemd_unit_include: Option<String>,
    pub systemd_unit_exclude: Option<String>,
    /// Scrape targets' URLs.
    pub scrape: Option<Vec<String>>,
    pub kube_node: Option<String>,
    pub kube_api: Option<String>,
    pub kube_token_file: Option<PathBuf>,
    pub kube_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ByteSizeValue {
    Bytes(u64),
    Text(String),
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text).map_err(|e| Error::config(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    }
}

/// A token that never shows up in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Where batches go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// `POST {server}/api/v1/metrics/bulk` with a bearer token.
    Http { server: reqwest::Url, token: Secret },
    /// Publish `{"samples":[...]}` to `metrics/{tenant}` at QoS 1.
    Mqtt { url: String, tenant: String, token: Secret },
}

/// The effective configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// `None` only with `--once`, which sends nothing.
    pub transport: Option<Transport>,
    pub interval: Duration,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub host_label: String,
    pub proc_root: PathBuf,
    pub root: Option<PathBuf>,
    /// Trust only these CAs for https:// and mqtts://; `None` = the built-in public roots.
    pub ca_file: Option<PathBuf>,
    /// Devices, interfaces and mount points of the per-device families.
    pub filters: Filters,
    /// systemd unit states (`systemd`, `systemd-unit-include`, `systemd-unit-exclude`).
    pub systemd: SystemdConfig,
    /// Static scrape targets (`--scrape`, the file's `scrape`).
    pub scrape: Vec<Target>,
    /// Pod discovery (`--kube-node`).
    pub kube: Option<KubeConfig>,
    pub once: bool,
    /// `--health`: check a running agent's heartbeat and exit.
    pub health: bool,
}

impl Config {
    /// Reads the `--config` file if any and resolves everything.
    pub fn load(cli: Cli) -> Result<Self> {
        let file = match &cli.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let root = cli.root.clone().or_else(|| file.root.clone());
        Self::resolve(cli, file, || default_host_label(root.as_deref()))
    }

    /// Merges flags/env (already merged by clap) over the file over the defaults, and checks
    /// the result. `hostname` supplies the default host label.
    pub fn resolve(cli: Cli, file: FileConfig, hostname: impl FnOnce() -> Option<String>) -> Result<Self> {
        let filters = resolve_filters(&cli, &file)?;
        let systemd = resolve_systemd(&cli, &file)?;
        let scrape = match (cli.scrape.is_empty(), &file.scrape) {
            (false, _) => cli.scrape.iter().map(|url| Target::parse("--scrape", url)).collect::<Result<Vec<_>>>()?,
            (true, Some(urls)) => urls.iter().map(|url| Target::parse("scrape", url)).collect::<Result<Vec<_>>>()?,
            (true, None) => Vec::new(),
        };
        let kube = match cli.kube_node.clone().or(file.kube_node.clone()).filter(|n| !n.is_empty()) {
            Some(node) => Some(KubeConfig::resolve(
                node,
                cli.kube_api.clone().or(file.kube_api.clone()),
                cli.kube_token_file.clone().or(file.kube_token_file.clone()),
                cli.kube_ca_file.clone().or(file.kube_ca_file.clone()),
            )?),
            None => None,
        };
        let interval = match (cli.interval, file.interval) {
            (Some(d), _) => d,
            (None, Some(text)) => {
                parse_duration(&text).map_err(|e| Error::config(format!("interval `{text}`: {e}")))?
            }
            (None, None) => DEFAULT_INTERVAL,
        };
        if interval < MIN_INTERVAL {
            return Err(Error::config(format!(
                "--interval must be at least {}",
                humantime::format_duration(MIN_INTERVAL)
            )));
        }
        let spool_max_bytes = match (cli.spool_max_bytes, file.spool_max_bytes) {
            (Some(n), _) | (None, Some(ByteSizeValue::Bytes(n))) => n,
            (None, Some(ByteSizeValue::Text(text))) => {
                parse_bytes(&text).map_err(|e| Error::config(format!("spool-max-bytes `{text}`: {e}")))?
            }
            (None, None) => DEFAULT_SPOOL_MAX_BYTES,
        };
        if spool_max_bytes == 0 {
            return Err(Error::config("--spool-max-bytes must be more than 0"));
        }
        let host_label = match cli.host_label.or(file.host_label) {
            Some(label) => label,
            None => hostname().ok_or_else(|| Error::config("cannot read the hostname; set --host-label"))?,
        };
        if host_label.trim().is_empty() {
            return Err(Error::config("--host-label must not be empty"));
        }

        let server = cli.server.or(file.server);
        let mqtt = cli.mqtt.or(file.mqtt);
        let token = cli.token.or(file.token).filter(|t| !t.is_empty());
        let ca_file = cli.ca_file.or(file.ca_file);
        let tenant = cli.tenant.or(file.tenant).filter(|t| !t.is_empty());
        let transport = match (server, mqtt) {
            (Some(_), Some(_)) => {
                return Err(Error::config("--server and --mqtt are exclusive; choose one transport"));
            }
            (Some(server), None) => {
                let server = parse_server_url(&server)?;
                let token = token.ok_or_else(|| Error::config("--token is required with --server"))?;
                Some(Transport::Http { server, token: Secret(token) })
            }
            (None, Some(url)) => {
                if !(url.starts_with("mqtt://") || url.starts_with("mqtts://")) {
                    return Err(Error::config(format!(
                        "--mqtt `{url}`: expected mqtt://host:port or mqtts://host:port"
                    )));
                }
                let tenant = tenant.ok_or_else(|| Error::config("--tenant is required with --mqtt"))?;
                if tenant.contains(['/', '+', '#']) {
                    return Err(Error::config(format!(
                        "--tenant `{tenant}`: must not contain `/`, `+` or `#` (it is part of an MQTT topic)"
                    )));
                }
                let token = token.ok_or_else(|| Error::config("--token is required with --mqtt"))?;
                Some(Transport::Mqtt { url, tenant, token: Secret(token) })
            }
            (None, None) if cli.once || cli.health => None,
            (None, None) => {
                return Err(Error::config(
                    "no destination: set --server URL --token T (or use --once to print one collection)",
                ));
            }
        };

        let uses_tls = match &transport {
            Some(Transport::Http { server, .. }) => server.scheme() == "https",
            Some(Transport::Mqtt { url, .. }) => url.starts_with("mqtts://"),
            None => true,
        };
        if ca_file.is_some() && !uses_tls {
            return Err(Error::config("--ca-file is only used with an https:// --server or an mqtts:// --mqtt"));
        }

        Ok(Self {
            transport,
            interval,
            spool_dir: cli.spool_dir.or(file.spool_dir).unwrap_or_else(|| DEFAULT_SPOOL_DIR.into()),
            spool_max_bytes,
            host_label,
            proc_root: cli.proc_root.or(file.proc_root).unwrap_or_else(|| DEFAULT_PROC_ROOT.into()),
            root: cli.root.or(file.root),
            ca_file,
            filters,
            systemd,
            scrape,
            kube,
            once: cli.once,
            health: cli.health,
        })
    }
}

/// Flag (or variable) over file key over default, for each of the six filter regexes; an
/// empty string turns a default off (`disk-exclude: ""` reports partitions too).
fn resolve_filters(cli: &Cli, file: &FileConfig) -> Result<Filters> {
    fn pick<'a>(flag: &'a Option<String>, key: &'a Option<String>, default: Option<&'a str>) -> Option<&'a str> {
        flag.as_deref().or(key.as_deref()).or(default).filter(|p| !p.is_empty())
    }
    let filter = |name: &str, include: Option<&str>, exclude: Option<&str>| -> Result<NameFilter> {
        let (include_key, exclude_key) = (format!("{name}-include"), format!("{name}-exclude"));
        NameFilter::new(include.map(|p| (include_key.as_str(), p)), exclude.map(|p| (exclude_key.as_str(), p)))
    };
    Ok(Filters {
        disk: filter(
            "disk",
            pick(&cli.disk_include, &file.disk_include, None),
            pick(&cli.disk_exclude, &file.disk_exclude, Some(DEFAULT_DISK_EXCLUDE)),
        )?,
        net: filter(
            "net",
            pick(&cli.net_include, &file.net_include, None),
            pick(&cli.net_exclude, &file.net_exclude, None),
        )?,
        fs: filter(
            "fs",
            pick(&cli.fs_include, &file.fs_include, None),
            pick(&cli.fs_exclude, &file.fs_exclude, Some(DEFAULT_FS_EXCLUDE)),
        )?,
    })
}

/// `systemd` and its unit filters, flag over file over default like the other filters.
fn resolve_systemd(cli: &Cli, file: &FileConfig) -> Result<SystemdConfig> {
    let pick = |flag: &Option<String>, key: &Option<String>, default: Option<&str>| {
        flag.clone().or(key.clone()).or(default.map(str::to_owned)).filter(|p| !p.is_empty())
    };
    let include = pick(&cli.systemd_unit_include, &file.systemd_unit_include, None);
    let exclude = pick(&cli.systemd_unit_exclude, &file.systemd_unit_exclude, Some(DEFAULT_UNIT_EXCLUDE));
    Ok(SystemdConfig {
        enabled: cli.systemd.or(file.systemd).unwrap_or(true),
        units: NameFilter::new(
            include.as_deref().map(|p| ("systemd-unit-include", p)),
            exclude.as_deref().map(|p| ("systemd-unit-exclude", p)),
        )?,
    })
}

/// The hostname; with `--root`, the host's (`<root>/etc/hostname`), since a container's own
/// hostname is its pod's unless it shares the host's UTS namespace.
pub fn default_host_label(root: Option<&Path>) -> Option<String> {
    let from_root = root
        .and_then(|root| std::fs::read_to_string(root.join("etc/hostname")).ok())
        .and_then(|text| text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned));
    from_root.or_else(sysinfo::System::host_name).filter(|h| !h.is_empty())
}

fn parse_server_url(text: &str) -> Result<reqwest::Url> {
    let url = reqwest::Url::parse(text).map_err(|e| Error::config(format!("--server `{text}`: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::config(format!("--server `{text}`: expected http://host[:port] or https://host[:port]")));
    }
    Ok(url)
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

/// Bytes, or a number with a unit: K/KiB, M/MiB, G/GiB are powers of 1024; KB, MB, GB of 1000.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("`{text}` is not a size such as 67108864 or 64MiB"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("unknown size unit `{other}` (use KiB, MiB, GiB, KB, MB, GB)")),
    };
    number.checked_mul(multiplier).ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Option<String> {
        Some("box".into())
    }

    fn file(yaml: &str) -> FileConfig {
        FileConfig::parse(yaml).unwrap()
    }

    #[test]
    fn defaults_apply_when_nothing_is_given() {
        let cli = Cli { once: true, ..Cli::default() };
        let config = Config::resolve(cli, FileConfig::default(), host).unwrap();
        assert_eq!(config.transport, None);
        assert_eq!(config.interval, DEFAULT_INTERVAL);
        assert_eq!(config.spool_dir, PathBuf::from(DEFAULT_SPOOL_DIR));
        assert_eq!(config.spool_max_bytes, 64 * 1024 * 1024);
        assert_eq!(config.host_label, "box");
        assert_eq!(config.proc_root, PathBuf::from("/proc"));
        assert_eq!(config.root, None);
    }

    #[test]
    fn the_file_fills_in_what_flags_and_env_leave_out() {
        let yaml = "server: http://file:8080\ntoken: file-token\ninterval: 30s\n\
                    spool-dir: /var/spool/md\nspool-max-bytes: 1MiB\nhost-label: from-file\n\
                    proc-root: /host/proc\nroot: /host\n";
        let config = Config::resolve(Cli::default(), file(yaml), host).unwrap();
        assert_eq!(
            config.transport,
            Some(Transport::Http { server: "http://file:8080".parse().unwrap(), token: Secret("file-token".into()) })
        );
        assert_eq!(config.interval, Duration::from_secs(30));
        assert_eq!(config.spool_dir, PathBuf::from("/var/spool/md"));
        assert_eq!(config.spool_max_bytes, 1 << 20);
        assert_eq!(config.host_label, "from-file");
        assert_eq!(config.proc_root, PathBuf::from("/host/proc"));
        assert_eq!(config.root, Some(PathBuf::from("/host")));
    }

    #[test]
    fn flags_win_over_the_file() {
        let yaml = "server: http://file:8080\ntoken: file-token\ninterval: 30s\nspool-max-bytes: 1000\nhost-label: from-file\n";
        let cli = Cli {
            interval: Some(Duration::from_secs(5)),
            host_label: Some("from-flag".into()),
            spool_max_bytes: Some(2000),
            ..Cli::default()
        };
        let config = Config::resolve(cli, file(yaml), host).unwrap();
        assert_eq!(config.interval, Duration::from_secs(5));
        assert_eq!(config.host_label, "from-flag");
        assert_eq!(config.spool_max_bytes, 2000);
        assert!(matches!(config.transport, Some(Transport::Http { .. })));
    }

    /// The only test that touches the process environment (and the only one that parses
    /// through clap, which reads it), so no other test can observe the variables.
    #[test]
    fn flags_win_over_env_and_env_wins_over_the_file() {
        // SAFETY: no other test reads or writes these variables (see above).
        unsafe {
            std::env::set_var("MICRODASH_AGENT_INTERVAL", "20s");
            std::env::set_var("MICRODASH_AGENT_HOST_LABEL", "from-env");
        }
        let yaml = "interval: 30s\nhost-label: from-file\nspool-dir: /from-file\n";
        let env_only = Cli::try_parse_from(["microdash-agent", "--once"]).unwrap();
        let with_flag = Cli::try_parse_from(["microdash-agent", "--once", "--interval", "5s"]).unwrap();
        unsafe {
            std::env::remove_var("MICRODASH_AGENT_INTERVAL");
            std::env::remove_var("MICRODASH_AGENT_HOST_LABEL");
        }

        let config = Config::resolve(env_only, file(yaml), host).unwrap();
        assert_eq!(config.interval, Duration::from_secs(20), "env over file");
        assert_eq!(config.host_label, "from-env");
        assert_eq!(config.spool_dir, PathBuf::from("/from-file"), "file over default");

        let config = Config::resolve(with_flag, file(yaml), host).unwrap();
        assert_eq!(config.interval, Duration::from_secs(5), "flag over env");
    }

    #[test]
    fn unknown_file_keys_are_rejected_by_name() {
        let err = FileConfig::parse("spool_dir: /x\n").unwrap_err();
        assert!(err.contains("spool_dir"), "{err}");
    }

    #[test]
    fn errors_name_the_missing_or_wrong_flag() {
        let err = |cli: Cli| Config::resolve(cli, FileConfig::default(), host).unwrap_err().to_string();
        assert!(err(Cli::default()).contains("--server"));
        assert!(err(Cli { server: Some("http://x".into()), ..Cli::default() }).contains("--token"));
        assert!(
            err(Cli { server: Some("ftp://x".into()), token: Some("t".into()), ..Cli::default() }).contains("--server")
        );
        assert!(
            err(Cli { mqtt: Some("mqtt://x:1883".into()), token: Some("t".into()), ..Cli::default() })
                .contains("--tenant")
        );
        assert!(
            err(Cli { once: true, interval: Some(Duration::from_millis(10)), ..Cli::default() }).contains("--interval")
        );
        let no_hostname =
            Config::resolve(Cli { once: true, ..Cli::default() }, FileConfig::default(), || None).unwrap_err();
        assert!(no_hostname.to_string().contains("--host-label"));
    }

    #[test]
    fn a_ca_file_needs_a_tls_destination() {
        let with_ca = |server: &str| Cli {
            server: Some(server.into()),
            token: Some("t".into()),
            ca_file: Some("/etc/ca.pem".into()),
            ..Cli::default()
        };
        let err = Config::resolve(with_ca("http://x:8080"), FileConfig::default(), host).unwrap_err();
        assert!(err.to_string().contains("--ca-file"), "{err}");
        let config = Config::resolve(with_ca("https://x"), FileConfig::default(), host).unwrap();
        assert_eq!(config.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        let mqtts = Cli {
            mqtt: Some("mqtts://broker".into()),
            tenant: Some("acme".into()),
            token: Some("t".into()),
            ..Cli::default()
        };
        let config = Config::resolve(mqtts, file("ca-file: /from/file.pem\n"), host).unwrap();
        assert_eq!(config.ca_file, Some(PathBuf::from("/from/file.pem")));
    }

    #[test]
    fn with_root_the_host_label_is_the_hosts_hostname() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/hostname"), "# comment\nnode-7\n").unwrap();
        assert_eq!(default_host_label(Some(root.path())).as_deref(), Some("node-7"));
        // No file there: the hostname the agent itself sees.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(default_host_label(Some(empty.path())), default_host_label(None));
    }

    #[test]
    fn device_filters_come_from_flags_or_file_and_a_bad_regex_names_its_key() {
        let yaml = "disk-include: ^nvme\nnet-exclude: ^(veth|cni)\nfs-exclude: \"\"\n";
        let cli = Cli { once: true, disk_exclude: Some("n1$".into()), ..Cli::default() };
        let filters = Config::resolve(cli, file(yaml), host).unwrap().filters;
        assert!(filters.disk.allows("nvme0n2") && !filters.disk.allows("nvme0n1") && !filters.disk.allows("sda"));
        assert!(filters.net.allows("eth0") && !filters.net.allows("veth12ab"));
        assert!(filters.fs.allows("/proc"), "an empty regex turns the default off");
        let defaults = Config::resolve(Cli { once: true, ..Cli::default() }, FileConfig::default(), host).unwrap();
        assert!(!defaults.filters.disk.allows("sda1") && !defaults.filters.fs.allows("/proc"));

        let err = Config::resolve(Cli { once: true, ..Cli::default() }, file("net-include: \"eth(\"\n"), host)
            .unwrap_err()
            .to_string();
        assert!(err.contains("net-include") && err.contains("eth("), "{err}");
    }

    #[test]
    fn systemd_switch_and_unit_filters_come_from_flags_or_file_and_a_bad_regex_names_its_key() {
        let defaults = Config::resolve(Cli { once: true, ..Cli::default() }, FileConfig::default(), host).unwrap();
        assert!(defaults.systemd.enabled);
        assert!(defaults.systemd.units.allows("cron.service") && defaults.systemd.units.allows("dbus.socket"));
        for excluded in ["-.mount", "dev-sda.device", "init.scope", "system.slice", "proc-sys-fs-binfmt_misc.automount"]
        {
            assert!(!defaults.systemd.units.allows(excluded), "{excluded}");
        }

        let yaml = "systemd: false\nsystemd-unit-include: \\.service$\nsystemd-unit-exclude: \"\"\n";
        let from_file = Config::resolve(Cli { once: true, ..Cli::default() }, file(yaml), host).unwrap().systemd;
        assert!(!from_file.enabled);
        assert!(from_file.units.allows("cron.service") && !from_file.units.allows("cron.timer"));

        let cli =
            Cli::try_parse_from(["microdash-agent", "--once", "--systemd", "on", "--systemd-unit-exclude", "^cron"])
                .unwrap();
        let flags = Config::resolve(cli, file(yaml), host).unwrap().systemd;
        assert!(flags.enabled, "the flag wins over the file");
        assert!(!flags.units.allows("cron.service") && flags.units.allows("nginx.service"));
        assert!(Cli::try_parse_from(["microdash-agent", "--systemd", "perhaps"]).is_err());

        for (yaml, key) in [
            ("systemd-unit-include: \"a(\"\n", "systemd-unit-include"),
            ("systemd-unit-exclude: \"[x\"\n", "systemd-unit-exclude"),
        ] {
            let err = Config::resolve(Cli { once: true, ..Cli::default() }, file(yaml), host).unwrap_err().to_string();
            assert!(err.starts_with(&format!("configuration: {key} `")), "{err}");
        }
        let err = FileConfig::parse("systemd: maybe\n").unwrap_err();
        assert!(err.contains("systemd"), "{err}");
    }

    #[test]
    fn scrape_targets_repeat_as_flags_or_list_in_the_file() {
        let cli = Cli::try_parse_from([
            "microdash-agent",
            "--once",
            "--scrape",
            "http://127.0.0.1:9100/metrics",
            "--scrape",
            "http://[::1]:8080/metrics",
        ])
        .unwrap();
        let config = Config::resolve(cli, file("scrape: [http://ignored:1/metrics]\n"), host).unwrap();
        let instances: Vec<String> = config.scrape.iter().map(Target::instance).collect();
        assert_eq!(instances, ["127.0.0.1:9100", "[::1]:8080"], "flags replace the file's list");
        let config =
            Config::resolve(Cli { once: true, ..Cli::default() }, file("scrape:\n  - http://a:9100/metrics\n"), host)
                .unwrap();
        assert_eq!(config.scrape[0].url.as_str(), "http://a:9100/metrics");
        let err = Config::resolve(Cli { once: true, ..Cli::default() }, file("scrape: [ftp://a/metrics]\n"), host)
            .unwrap_err()
            .to_string();
        assert!(err.contains("scrape") && err.contains("ftp://a/metrics"), "{err}");
    }

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("2 GiB"), Ok(2 << 30));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let config = Config::resolve(
            Cli { server: Some("http://x:8080".into()), token: Some("sekrit".into()), ..Cli::default() },
            FileConfig::default(),
            host,
        )
        .unwrap();
        assert!(!format!("{config:?}").contains("sekrit"));
    }
}
