//! Host metrics through sysinfo. The sysinfo objects live as long as the collector: CPU usage
//! is the difference between two refreshes, and refreshing in place avoids re-listing
//! everything on each collection.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sysinfo::{
    CpuRefreshKind, DiskRefreshKind, Disks, MINIMUM_CPU_UPDATE_INTERVAL, MemoryRefreshKind, Networks, RefreshKind,
    System,
};

use crate::sample::Sample;

/// Every metric the agent sends, with its unit and labels besides `host` (the README's table).
pub const METRICS: &[(&str, &str, &[&str])] = &[
    ("cpu.usage", "percent", &["cpu"]),
    ("load.1", "load average", &[]),
    ("load.5", "load average", &[]),
    ("load.15", "load average", &[]),
    ("mem.used", "bytes", &[]),
    ("mem.total", "bytes", &[]),
    ("swap.used", "bytes", &[]),
    ("swap.total", "bytes", &[]),
    ("disk.used", "bytes", &["mount"]),
    ("disk.total", "bytes", &["mount"]),
    ("disk.read_bytes", "bytes, cumulative", &["device"]),
    ("disk.written_bytes", "bytes, cumulative", &["device"]),
    ("net.rx_bytes", "bytes, cumulative", &["iface"]),
    ("net.tx_bytes", "bytes, cumulative", &["iface"]),
    ("uptime.seconds", "seconds", &[]),
    ("process.count", "processes", &[]),
    // Agent v2, read from procfs and sysfs (crate::node); `_total` marks a counter.
    ("cpu.seconds_total", "seconds, counter", &["cpu", "mode"]),
    ("cpu.context_switches_total", "switches, counter", &[]),
    ("cpu.interrupts_total", "interrupts, counter", &[]),
    ("process.forks_total", "forks, counter", &[]),
    ("process.running", "processes", &[]),
    ("process.blocked", "processes", &[]),
    ("boot.time_seconds", "Unix seconds", &[]),
    ("meminfo.*", "bytes (`_bytes`) or a count", &[]),
    ("vmstat.*", "pages or events, counter", &[]),
    ("fs.size_bytes", "bytes", &["device", "fstype", "mount"]),
    ("fs.free_bytes", "bytes", &["device", "fstype", "mount"]),
    ("fs.avail_bytes", "bytes", &["device", "fstype", "mount"]),
    ("fs.files", "inodes", &["device", "fstype", "mount"]),
    ("fs.files_free", "inodes", &["device", "fstype", "mount"]),
    ("fs.readonly", "0 or 1", &["device", "fstype", "mount"]),
    ("disk.*", "see the README, counters end in _total", &["device"]),
    ("net.receive_*", "bytes, packets or events, counter", &["device"]),
    ("net.transmit_*", "bytes, packets or events, counter", &["device"]),
    ("pressure.*", "seconds, counter", &[]),
    ("filefd.allocated", "file handles", &[]),
    ("filefd.maximum", "file handles", &[]),
    ("entropy.available_bits", "bits", &[]),
    ("sockstat.*", "sockets (`_mem_bytes`: bytes)", &[]),
    ("hwmon.temp_celsius", "degrees Celsius", &["chip", "sensor"]),
    ("thermal.zone_celsius", "degrees Celsius", &["type", "zone"]),
    // systemd over D-Bus (crate::systemd), where the system bus answers.
    ("systemd.unit_state", "0 or 1", &["name", "state", "type"]),
    ("systemd.units", "units", &["state"]),
    ("systemd.system_running", "0 or 1", &[]),
    ("systemd.system_state", "0 or 1", &["state"]),
    ("systemd.version", "version number", &["version"]),
];

/// The `METRICS` entry documenting `metric`: its exact name, or a family written `prefix*`.
pub fn documented(metric: &str) -> Option<&'static (&'static str, &'static str, &'static [&'static str])> {
    METRICS.iter().find(|(name, _, _)| *name == metric).or_else(|| {
        METRICS.iter().find(|(name, _, _)| name.strip_suffix('*').is_some_and(|prefix| metric.starts_with(prefix)))
    })
}

pub struct Collector {
    host: String,
    system: System,
    /// `None` on Linux: the interfaces come from `net_dev`.
    networks: Option<Networks>,
    /// `<proc-root>/net/dev`, or with `--root` `<proc-root>/1/net/dev`.
    net_dev: PathBuf,
    disks: DiskSource,
    proc_root: PathBuf,
    last_cpu_refresh: Instant,
    /// The procfs/sysfs families (Linux).
    #[cfg(target_os = "linux")]
    node: crate::node::NodeCollector,
}

/// Where filesystem usage comes from.
enum DiskSource {
    /// The agent's own mount table, through sysinfo.
    Local(Disks),
    /// The host's mount table and filesystems seen from a container (`--root`).
    #[cfg(target_os = "linux")]
    HostRoot { root: PathBuf },
}

/// One mounted filesystem, whichever source it came from.
#[derive(Debug, Clone, PartialEq)]
struct MountUsage {
    mount: String,
    /// Kernel block device name (`sda1`, `dm-0`), when the filesystem has one.
    device: Option<String>,
    total: u64,
    available: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DiskIo {
    read_bytes: u64,
    written_bytes: u64,
}

impl Collector {
    /// `root`: see `--root`. Takes the first CPU reading so the first collection has a usage.
    pub fn new(
        host: impl Into<String>,
        proc_root: impl Into<PathBuf>,
        root: Option<PathBuf>,
        filters: crate::filter::Filters,
    ) -> crate::Result<Self> {
        let proc_root = proc_root.into();
        #[cfg(target_os = "linux")]
        let node = crate::node::NodeCollector::new(&proc_root, root.as_deref(), filters);
        #[cfg(not(target_os = "linux"))]
        let _ = filters;
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
                .with_memory(MemoryRefreshKind::everything()),
        );
        // On Linux the counters come from `net/dev` directly (one file, where sysinfo reads
        // several sysfs files per interface); with `--root`, the host init's.
        let networks = (root.is_none() && !cfg!(target_os = "linux")).then(Networks::new_with_refreshed_list);
        let net_dev = proc_root.join(if root.is_some() { "1/net/dev" } else { "net/dev" });
        let disks = match root {
            None => DiskSource::Local(Disks::new_with_refreshed_list_specifics(disk_refresh_kind())),
            #[cfg(target_os = "linux")]
            Some(root) => DiskSource::HostRoot { root },
            #[cfg(not(target_os = "linux"))]
            Some(_) => {
                return Err(crate::Error::config("--root is only supported on Linux"));
            }
        };
        Ok(Self {
            host: host.into(),
            system,
            networks,
            net_dev,
            disks,
            proc_root,
            last_cpu_refresh: Instant::now(),
            #[cfg(target_os = "linux")]
            node,
        })
    }

    /// One collection. Blocking (file system reads, and on the first call a short wait so
    /// CPU usage covers at least sysinfo's minimum interval): run it off the async runtime.
    /// Appends a collection's scraped samples after its host samples.
    pub fn append_scraped(
        &self,
        seq: u64,
        ts_ms: i64,
        samples: Vec<Sample>,
        scraped: Vec<crate::scrape::Scraped>,
    ) -> Vec<Sample> {
        let mut out = SampleWriter::continuing(&self.host, seq, ts_ms, samples);
        for sample in scraped {
            out.push_scraped(sample);
        }
        out.samples
    }

    pub fn collect(&mut self, seq: u64, ts_ms: i64) -> Vec<Sample> {
        let since = self.last_cpu_refresh.elapsed();
        if since < MINIMUM_CPU_UPDATE_INTERVAL {
            std::thread::sleep(MINIMUM_CPU_UPDATE_INTERVAL - since);
        }
        self.system.refresh_cpu_usage();
        self.last_cpu_refresh = Instant::now();
        self.system.refresh_memory();
        let process_count = self.process_count();
        let network = self.network_totals();

        let mut out = SampleWriter::new(&self.host, seq, ts_ms);

        out.push("cpu.usage", percent(self.system.global_cpu_usage()), &[("cpu", "total")]);
        for (index, cpu) in self.system.cpus().iter().enumerate() {
            out.push("cpu.usage", percent(cpu.cpu_usage()), &[("cpu", &index.to_string())]);
        }

        let load = System::load_average();
        out.push("load.1", load.one, &[]);
        out.push("load.5", load.five, &[]);
        out.push("load.15", load.fifteen, &[]);

        out.push("mem.used", self.system.used_memory() as f64, &[]);
        out.push("mem.total", self.system.total_memory() as f64, &[]);
        out.push("swap.used", self.system.used_swap() as f64, &[]);
        out.push("swap.total", self.system.total_swap() as f64, &[]);

        let (mounts, io) = self.disks.read(&self.proc_root);
        for mount in &mounts {
            let used = mount.total.saturating_sub(mount.available);
            out.push("disk.used", used as f64, &[("mount", &mount.mount)]);
            out.push("disk.total", mount.total as f64, &[("mount", &mount.mount)]);
        }
        for (device, io) in &io {
            out.push("disk.read_bytes", io.read_bytes as f64, &[("device", device)]);
            out.push("disk.written_bytes", io.written_bytes as f64, &[("device", device)]);
        }

        for (iface, rx, tx) in network {
            out.push("net.rx_bytes", rx as f64, &[("iface", &iface)]);
            out.push("net.tx_bytes", tx as f64, &[("iface", &iface)]);
        }

        out.push("uptime.seconds", System::uptime() as f64, &[]);
        if let Some(count) = process_count {
            out.push("process.count", count as f64, &[]);
        }
        #[cfg(target_os = "linux")]
        self.node.collect(&mut out);
        out.samples
    }

    /// `(interface, received bytes, transmitted bytes)`, sorted by interface. With `--root`,
    /// those of the host's init, whose network namespace is the host's even when the agent's
    /// own is a pod's (no `hostNetwork`).
    fn network_totals(&mut self) -> Vec<(String, u64, u64)> {
        let mut totals = match &mut self.networks {
            Some(networks) => {
                networks.refresh(true);
                networks
                    .list()
                    .iter()
                    .map(|(iface, data)| (iface.clone(), data.total_received(), data.total_transmitted()))
                    .collect()
            }
            None => std::fs::read_to_string(&self.net_dev).map(|text| parse_net_dev(&text)).unwrap_or_else(|error| {
                tracing::debug!(%error, "Cannot read the host's network counters.");
                Vec::new()
            }),
        };
        totals.sort();
        totals
    }

    /// Counting `/proc/<pid>` entries is all that is needed; sysinfo's process list would
    /// read and keep open a file per process.
    #[cfg(target_os = "linux")]
    fn process_count(&mut self) -> Option<usize> {
        let entries = std::fs::read_dir(&self.proc_root).ok()?;
        Some(
            entries
                .filter_map(|e| e.ok())
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.as_encoded_bytes();
                    !name.is_empty() && name.iter().all(u8::is_ascii_digit)
                })
                .count(),
        )
    }

    #[cfg(not(target_os = "linux"))]
    fn process_count(&mut self) -> Option<usize> {
        self.system.refresh_processes_specifics(
            sysinfo::ProcessesToUpdate::All,
            true,
            sysinfo::ProcessRefreshKind::nothing(),
        );
        Some(self.system.processes().len())
    }
}

/// `(interface, rx bytes, tx bytes)` from a `/proc/<pid>/net/dev` table.
fn parse_net_dev(text: &str) -> Vec<(String, u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let (iface, counters) = line.split_once(':')?;
            let counters: Vec<u64> = counters.split_whitespace().map(|v| v.parse().ok()).collect::<Option<_>>()?;
            Some((iface.trim().to_owned(), *counters.first()?, *counters.get(8)?))
        })
        .collect()
}

/// sysinfo's f32 percentages widen to f64 as 98.11320495605469; two decimals are all they hold.
fn percent(value: f32) -> f64 {
    (f64::from(value) * 100.0).round() / 100.0
}

fn disk_refresh_kind() -> DiskRefreshKind {
    DiskRefreshKind::nothing().with_storage().with_io_usage()
}

impl DiskSource {
    /// Mounted filesystems (sorted by mount point, one per mount point) and cumulative I/O
    /// per block device behind them.
    fn read(&mut self, proc_root: &Path) -> (Vec<MountUsage>, BTreeMap<String, DiskIo>) {
        let mut mounts = Vec::new();
        let mut io = BTreeMap::new();
        match self {
            DiskSource::Local(disks) => {
                let _ = proc_root;
                disks.refresh_specifics(true, disk_refresh_kind());
                for disk in disks.list() {
                    let fs_type = disk.file_system().to_string_lossy();
                    let mount = disk.mount_point().to_string_lossy().into_owned();
                    // File bind mounts (a container's /etc/hosts) repeat their disk's numbers.
                    if is_pseudo_filesystem(&fs_type) || !disk.mount_point().is_dir() {
                        continue;
                    }
                    let device = block_device_name(&disk.name().to_string_lossy());
                    if let Some(device) = &device {
                        let usage = disk.usage();
                        io.insert(
                            device.clone(),
                            DiskIo { read_bytes: usage.total_read_bytes, written_bytes: usage.total_written_bytes },
                        );
                    }
                    mounts.push(MountUsage {
                        mount,
                        device,
                        total: disk.total_space(),
                        available: disk.available_space(),
                    });
                }
            }
            #[cfg(target_os = "linux")]
            DiskSource::HostRoot { root } => {
                mounts = host_root::mounts(proc_root, root);
                let stats = host_root::disk_stats(proc_root);
                for device in mounts.iter().filter_map(|m| m.device.as_ref()) {
                    if let Some(stat) = stats.get(device) {
                        io.insert(device.clone(), *stat);
                    }
                }
            }
        }
        mounts.sort_by(|a, b| a.mount.cmp(&b.mount));
        let mut seen = BTreeSet::new();
        mounts.retain(|m| seen.insert(m.mount.clone()));
        (mounts, io)
    }
}

/// `/dev/sda1` → `sda1`, `/dev/mapper/vg-root` → `dm-0` (following the symlink); `None` for
/// filesystems without a block device (overlay, nfs, ...).
fn block_device_name(device: &str) -> Option<String> {
    let path = Path::new(device);
    if !device.starts_with("/dev/") {
        return None;
    }
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    resolved.file_name().map(|name| name.to_string_lossy().into_owned())
}

/// Kernel and virtual filesystems whose "usage" means nothing about disks.
pub fn is_pseudo_filesystem(fs_type: &str) -> bool {
    matches!(
        fs_type,
        "proc"
            | "sysfs"
            | "devtmpfs"
            | "devpts"
            | "tmpfs"
            | "ramfs"
            | "rootfs"
            | "cgroup"
            | "cgroup2"
            | "pstore"
            | "securityfs"
            | "debugfs"
            | "tracefs"
            | "bpf"
            | "configfs"
            | "fusectl"
            | "mqueue"
            | "hugetlbfs"
            | "autofs"
            | "binfmt_misc"
            | "nsfs"
            | "rpc_pipefs"
            | "efivarfs"
            | "selinuxfs"
            | "squashfs"
            | "iso9660"
            | "fuse.lxcfs"
            | "fuse.gvfsd-fuse"
            | "fuse.portal"
    )
}

/// Writes samples with the shared timestamp, the `host` label and batch-stable dedupe ids.
pub(crate) struct SampleWriter<'a> {
    host: &'a str,
    seq: u64,
    ts_ms: i64,
    pub(crate) samples: Vec<Sample>,
}

impl<'a> SampleWriter<'a> {
    pub(crate) fn new(host: &'a str, seq: u64, ts_ms: i64) -> Self {
        Self { host, seq, ts_ms, samples: Vec::with_capacity(512) }
    }

    /// Goes on numbering after `samples`, the same collection's.
    pub(crate) fn continuing(host: &'a str, seq: u64, ts_ms: i64, samples: Vec<Sample>) -> Self {
        Self { host, seq, ts_ms, samples }
    }

    /// A scraped sample, whose labels are already a map; `host` is the agent's.
    pub(crate) fn push_scraped(&mut self, scraped: crate::scrape::Scraped) {
        let mut labels = scraped.labels;
        labels.insert("host".to_owned(), self.host.to_owned());
        let dedupe_id = format!("{}-{}-{}", self.host, self.seq, self.samples.len());
        self.samples.push(Sample { metric: scraped.metric, value: scraped.value, ts: self.ts_ms, labels, dedupe_id });
    }

    pub(crate) fn push(&mut self, metric: &str, value: f64, labels: &[(&str, &str)]) {
        if !value.is_finite() {
            return;
        }
        let mut all = BTreeMap::new();
        all.insert("host".to_owned(), self.host.to_owned());
        for (key, value) in labels {
            all.insert((*key).to_owned(), (*value).to_owned());
        }
        let dedupe_id = format!("{}-{}-{}", self.host, self.seq, self.samples.len());
        self.samples.push(Sample { metric: metric.to_owned(), value, ts: self.ts_ms, labels: all, dedupe_id });
    }
}

/// `--root`: the host's filesystems from inside a container. The mount table is the one of
/// the host's init process (`<proc-root>/1/mounts`, visible with `hostPID: true` or a bind
/// mount of the host's /proc), and each mount point is measured under `<root>`.
#[cfg(target_os = "linux")]
mod host_root {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::{DiskIo, MountUsage, is_pseudo_filesystem};

    /// Container runtimes' and kubelet's mounts: every pod's root and volumes, not host disks.
    const SKIPPED_PREFIXES: &[&str] = &[
        "/proc",
        "/sys",
        "/dev",
        "/run/containerd",
        "/run/docker",
        "/run/netns",
        "/var/lib/docker",
        "/var/lib/containerd",
        "/var/lib/kubelet",
        "/snap",
    ];

    pub(super) fn mounts(proc_root: &Path, root: &Path) -> Vec<MountUsage> {
        let table = match std::fs::read_to_string(proc_root.join("1/mounts")) {
            Ok(table) => table,
            Err(error) => {
                tracing::debug!(%error, "Cannot read the host's mount table.");
                return Vec::new();
            }
        };
        parse_mounts(&table)
            .into_iter()
            .filter_map(|(device, mount, _)| {
                let inside = root.join(mount.trim_start_matches('/'));
                let stat = rustix::fs::statvfs(&inside).ok()?;
                let device = super::block_device_name(&device).map(|name| {
                    // The container's /dev rarely has the host's symlinks; resolve on the host.
                    let on_host = root.join(device.trim_start_matches('/'));
                    std::fs::canonicalize(on_host)
                        .ok()
                        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                        .unwrap_or(name)
                });
                Some(MountUsage {
                    mount,
                    device,
                    total: stat.f_blocks * stat.f_frsize,
                    available: stat.f_bavail * stat.f_frsize,
                })
            })
            .collect()
    }

    /// `(device, mount point, fs type)` of the real filesystems in a `/proc/<pid>/mounts` table.
    pub(super) fn parse_mounts(table: &str) -> Vec<(String, String, String)> {
        table
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let device = unescape(fields.next()?);
                let mount = unescape(fields.next()?);
                let fs_type = fields.next()?.to_owned();
                let skipped = is_pseudo_filesystem(&fs_type)
                    || fs_type == "overlay"
                    || SKIPPED_PREFIXES.iter().any(|p| mount == *p || mount.starts_with(&format!("{p}/")));
                (!skipped).then_some((device, mount, fs_type))
            })
            .collect()
    }

    /// `/proc/*/mounts` writes space, tab, newline and backslash as `\040`-style octal.
    fn unescape(field: &str) -> String {
        let bytes = field.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let octal = bytes.get(i + 1..i + 4);
            if bytes[i] == b'\\'
                && let Some(digits) = octal
                && digits.iter().all(|d| (b'0'..=b'7').contains(d))
            {
                out.push(digits.iter().fold(0u8, |n, d| n.wrapping_mul(8).wrapping_add(d - b'0')));
                i += 4;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Cumulative bytes per block device from `<proc-root>/diskstats` (512-byte sectors).
    pub(super) fn disk_stats(proc_root: &Path) -> BTreeMap<String, DiskIo> {
        std::fs::read_to_string(proc_root.join("diskstats")).map(|text| parse_disk_stats(&text)).unwrap_or_default()
    }

    pub(super) fn parse_disk_stats(text: &str) -> BTreeMap<String, DiskIo> {
        const SECTOR: u64 = 512;
        text.lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let number = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
                Some((
                    (*fields.get(2)?).to_owned(),
                    DiskIo { read_bytes: number(5)? * SECTOR, written_bytes: number(9)? * SECTOR },
                ))
            })
            .collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_host_mount_table_keeps_real_filesystems_only() {
            let table = "\
/dev/vda1 / ext4 rw,relatime 0 0
proc /proc proc rw 0 0
tmpfs /run tmpfs rw 0 0
/dev/vdb /data\\040disk xfs rw 0 0
overlay /var/lib/docker/overlay2/abc/merged overlay rw 0 0
/dev/vda1 /var/lib/kubelet/pods/x/volumes/y ext4 rw 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw 0 0
";
            let mounts: Vec<_> = parse_mounts(table).into_iter().map(|(d, m, _)| (d, m)).collect();
            assert_eq!(
                mounts,
                vec![("/dev/vda1".to_owned(), "/".to_owned()), ("/dev/vdb".to_owned(), "/data disk".to_owned()),]
            );
        }

        #[test]
        fn disk_stats_are_bytes_from_sectors() {
            let text = " 254       0 vda 29628 5801 2610162 39375 6505 30623 1491144 6519 0 17840 46374\n";
            let stats = parse_disk_stats(text);
            assert_eq!(stats["vda"], DiskIo { read_bytes: 2_610_162 * 512, written_bytes: 1_491_144 * 512 });
        }

        #[test]
        fn host_root_mode_measures_the_mounts_under_root() {
            // A fake procfs whose init mounts "/" of the host, and "/" as the host root.
            let proc_root = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(proc_root.path().join("1")).unwrap();
            std::fs::write(
                proc_root.path().join("1/mounts"),
                "/dev/nonexistent-disk / ext4 rw 0 0\nproc /proc proc rw 0 0\n",
            )
            .unwrap();
            let found = mounts(proc_root.path(), Path::new("/"));
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].mount, "/");
            assert_eq!(found[0].device.as_deref(), Some("nonexistent-disk"));
            assert!(found[0].total > 0 && found[0].available <= found[0].total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::is_valid_name;

    fn collect_once() -> Vec<Sample> {
        let mut collector = Collector::new("test-host", "/proc", None, Default::default()).unwrap();
        collector.collect(42, 1_764_104_400_000)
    }

    #[test]
    fn every_sample_has_a_documented_valid_name_and_the_host_label() {
        let samples = collect_once();
        assert!(!samples.is_empty());
        for sample in &samples {
            assert!(is_valid_name(&sample.metric), "{}", sample.metric);
            let (_, _, labels) =
                documented(&sample.metric).unwrap_or_else(|| panic!("{} is not in METRICS", sample.metric));
            assert_eq!(sample.labels["host"], "test-host");
            let mut keys: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
            keys.retain(|k| *k != "host");
            assert_eq!(keys, labels.to_vec(), "labels of {}", sample.metric);
            for key in sample.labels.keys() {
                assert!(is_valid_name(key));
            }
            assert_eq!(sample.ts, 1_764_104_400_000);
            assert!(sample.value.is_finite());
        }
    }

    #[test]
    fn the_core_metrics_are_present_on_any_linux_host() {
        let samples = collect_once();
        let names: BTreeSet<&str> = samples.iter().map(|s| s.metric.as_str()).collect();
        for expected in [
            "cpu.usage",
            "load.1",
            "load.5",
            "load.15",
            "mem.used",
            "mem.total",
            "swap.used",
            "swap.total",
            "net.rx_bytes",
            "net.tx_bytes",
            "uptime.seconds",
            "process.count",
        ] {
            assert!(names.contains(expected), "missing {expected}");
        }
        if cfg!(target_os = "linux") {
            assert!(names.contains("disk.used") && names.contains("disk.total"));
        }
        let total_cpu = samples
            .iter()
            .find(|s| s.metric == "cpu.usage" && s.labels["cpu"] == "total")
            .expect("cpu.usage{cpu=total}");
        assert!((0.0..=100.0).contains(&total_cpu.value));
        assert!(samples.iter().any(|s| s.metric == "cpu.usage" && s.labels["cpu"] == "0"));
        let mem_total = samples.iter().find(|s| s.metric == "mem.total").unwrap();
        assert!(mem_total.value > 0.0);
    }

    #[test]
    fn dedupe_ids_are_unique_within_a_batch_and_name_host_and_seq() {
        let samples = collect_once();
        let ids: BTreeSet<&str> = samples.iter().map(|s| s.dedupe_id.as_str()).collect();
        assert_eq!(ids.len(), samples.len());
        assert_eq!(samples[0].dedupe_id, "test-host-42-0");
    }

    #[test]
    fn a_second_collection_reuses_the_collector() {
        let mut collector = Collector::new("h", "/proc", None, Default::default()).unwrap();
        let first = collector.collect(1, 1);
        let second = collector.collect(2, 2);
        assert_eq!(first.len(), second.len());
        assert!(second[0].dedupe_id.starts_with("h-2-"));
    }

    #[test]
    fn net_dev_gives_bytes_per_interface() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1000      10    0    0    0     0          0         0     2000      20    0    0    0     0       0          0
  eth0: 123456789 1000  0    0    0     0          0         0 987654321    900    0    0    0     0       0          0
";
        assert_eq!(
            parse_net_dev(text),
            vec![("lo".to_owned(), 1000, 2000), ("eth0".to_owned(), 123_456_789, 987_654_321)]
        );
    }

    #[test]
    fn pseudo_filesystems_are_skipped() {
        for fs in ["proc", "tmpfs", "cgroup2", "sysfs", "fuse.lxcfs"] {
            assert!(is_pseudo_filesystem(fs));
        }
        for fs in ["ext4", "xfs", "btrfs", "overlay", "zfs", "nfs4"] {
            assert!(!is_pseudo_filesystem(fs));
        }
    }
}
