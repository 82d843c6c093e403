//! node_exporter's default coverage, read straight from procfs and sysfs: CPU time by mode,
//! every `/proc/meminfo` field, filesystems with inodes and read-only state, disk I/O, network
//! errors and drops, pressure, file descriptors, processes, entropy, temperatures. Each file is
//! read once per collection into one reused buffer and parsed in place.
//!
//! Names follow one scheme (agent/README.md, "Metrics"): `<family>.<quantity>`, the unit as a
//! suffix (`_bytes`, `_seconds`, `_celsius`), and counters — cumulative since boot or since the
//! device appeared — end in `_total`: the server stores them as they are and rates are computed
//! at query time (`agg=rate`, PromQL `rate()`).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::collector::SampleWriter;
use crate::filter::{Filters, NameFilter};

/// Reads the host's procfs and sysfs; one per agent, its buffers reused.
pub struct NodeCollector {
    proc_root: PathBuf,
    sys_root: PathBuf,
    /// The mount table: the host init's with `--root`, else the agent's own.
    mounts: PathBuf,
    /// `net/dev` of the host's init with `--root` (the host's network namespace).
    net_dev: PathBuf,
    /// `--root`: mount points are measured under it.
    root: Option<PathBuf>,
    filters: Filters,
    user_hz: f64,
    buf: String,
    /// A second buffer for reads made while `buf` is being parsed (sysfs attributes).
    small: String,
}

impl NodeCollector {
    pub fn new(proc_root: &Path, root: Option<&Path>, filters: Filters) -> Self {
        let host_view = root.is_some();
        Self {
            proc_root: proc_root.to_path_buf(),
            sys_root: root.map_or_else(|| PathBuf::from("/sys"), |r| r.join("sys")),
            mounts: proc_root.join(if host_view { "1/mounts" } else { "self/mounts" }),
            net_dev: proc_root.join(if host_view { "1/net/dev" } else { "net/dev" }),
            root: root.map(Path::to_path_buf),
            filters,
            user_hz: rustix::param::clock_ticks_per_second() as f64,
            buf: String::with_capacity(16 * 1024),
            small: String::with_capacity(64),
        }
    }

    /// One collection of every family; a file that is missing (no PSI, no hwmon) adds nothing.
    pub(crate) fn collect(&mut self, out: &mut SampleWriter) {
        if read_into(&mut self.buf, &self.proc_root.join("stat")) {
            parse_stat(&self.buf, self.user_hz, out);
        }
        if read_into(&mut self.buf, &self.proc_root.join("meminfo")) {
            parse_meminfo(&self.buf, out);
        }
        if read_into(&mut self.buf, &self.proc_root.join("vmstat")) {
            parse_vmstat(&self.buf, out);
        }
        if read_into(&mut self.buf, &self.proc_root.join("diskstats")) {
            parse_diskstats(&self.buf, &self.filters.disk, out);
        }
        if read_into(&mut self.buf, &self.net_dev) {
            parse_net_dev(&self.buf, &self.filters.net, out);
        }
        for resource in ["cpu", "memory", "io"] {
            if read_into(&mut self.buf, &self.proc_root.join("pressure").join(resource)) {
                parse_pressure(resource, &self.buf, out);
            }
        }
        if read_into(&mut self.buf, &self.proc_root.join("sys/fs/file-nr")) {
            parse_file_nr(&self.buf, out);
        }
        if read_into(&mut self.buf, &self.proc_root.join("sys/kernel/random/entropy_avail"))
            && let Ok(bits) = self.buf.trim().parse::<f64>()
        {
            out.push("entropy.available_bits", bits, &[]);
        }
        if read_into(&mut self.buf, &self.proc_root.join("net/sockstat")) {
            parse_sockstat(&self.buf, out);
        }
        if read_into(&mut self.buf, &self.mounts) {
            self.filesystems(out);
        }
        self.hwmon(out);
        self.thermal(out);
    }

    fn filesystems(&mut self, out: &mut SampleWriter) {
        let mut seen: Vec<&str> = Vec::new();
        // The last mount on a mount point is the one visible there: walk the table backwards.
        for line in self.buf.lines().rev() {
            let mut fields = line.split_ascii_whitespace();
            let (Some(device), Some(mount), Some(fs_type), Some(options)) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if skipped_fs_type(fs_type) || seen.contains(&mount) {
                continue;
            }
            seen.push(mount);
            let mount_point = unescape(mount);
            if !self.filters.fs.allows(&mount_point) {
                continue;
            }
            let path = match &self.root {
                Some(root) => root.join(mount_point.trim_start_matches('/')),
                None => PathBuf::from(&mount_point),
            };
            let Ok(stat) = rustix::fs::statvfs(&path) else { continue };
            let device = unescape(device);
            let labels = [("mount", mount_point.as_str()), ("device", device.as_str()), ("fstype", fs_type)];
            let block = stat.f_frsize as f64;
            out.push("fs.size_bytes", stat.f_blocks as f64 * block, &labels);
            out.push("fs.free_bytes", stat.f_bfree as f64 * block, &labels);
            out.push("fs.avail_bytes", stat.f_bavail as f64 * block, &labels);
            out.push("fs.files", stat.f_files as f64, &labels);
            out.push("fs.files_free", stat.f_ffree as f64, &labels);
            let readonly = options.split(',').any(|o| o == "ro");
            out.push("fs.readonly", f64::from(u8::from(readonly)), &labels);
        }
    }

    /// `hwmon.temp_celsius{chip,sensor}` from `/sys/class/hwmon/hwmon*/temp*_input`
    /// (millidegrees), `chip` being the driver's `name`.
    fn hwmon(&mut self, out: &mut SampleWriter) {
        let Ok(chips) = std::fs::read_dir(self.sys_root.join("class/hwmon")) else { return };
        for chip in chips.flatten() {
            let dir = chip.path();
            let chip_name = if read_into(&mut self.small, &dir.join("name")) {
                self.small.trim().to_owned()
            } else {
                chip.file_name().to_string_lossy().into_owned()
            };
            let Ok(files) = std::fs::read_dir(&dir) else { continue };
            for file in files.flatten() {
                let name = file.file_name();
                let Some(sensor) =
                    name.to_str().and_then(|n| n.strip_suffix("_input")).filter(|n| n.starts_with("temp"))
                else {
                    continue;
                };
                if read_into(&mut self.small, &file.path())
                    && let Ok(milli) = self.small.trim().parse::<f64>()
                {
                    out.push("hwmon.temp_celsius", milli / 1000.0, &[("chip", &chip_name), ("sensor", sensor)]);
                }
            }
        }
    }

    /// `thermal.zone_celsius{zone,type}` from `/sys/class/thermal/thermal_zone*/temp`.
    fn thermal(&mut self, out: &mut SampleWriter) {
        let Ok(zones) = std::fs::read_dir(self.sys_root.join("class/thermal")) else { return };
        for zone in zones.flatten() {
            let name = zone.file_name();
            let Some(number) = name.to_str().and_then(|n| n.strip_prefix("thermal_zone")) else { continue };
            let dir = zone.path();
            let kind = if read_into(&mut self.small, &dir.join("type")) {
                self.small.trim().to_owned()
            } else {
                String::new()
            };
            if read_into(&mut self.small, &dir.join("temp"))
                && let Ok(milli) = self.small.trim().parse::<f64>()
            {
                out.push("thermal.zone_celsius", milli / 1000.0, &[("zone", number), ("type", &kind)]);
            }
        }
    }
}

/// Replaces `buf` with the file's text; false when it cannot be read (absent, no permission).
fn read_into(buf: &mut String, path: &Path) -> bool {
    buf.clear();
    File::open(path).and_then(|mut f| f.read_to_string(buf)).is_ok()
}

/// Filesystems with no disk behind them, or whose `statvfs` may hang (an unreachable network
/// share). tmpfs stays: a full `/dev/shm` or `/run` is worth seeing.
fn skipped_fs_type(fs_type: &str) -> bool {
    let memory_backed = matches!(fs_type, "tmpfs" | "ramfs");
    (!memory_backed && crate::collector::is_pseudo_filesystem(fs_type))
        || matches!(
            fs_type,
            "overlay" | "nfs" | "nfs4" | "cifs" | "smb3" | "smbfs" | "ceph" | "glusterfs" | "fuse.sshfs" | "procfs"
        )
}

/// `/proc/*/mounts` writes space, tab, newline and backslash as `\040`-style octal.
pub(crate) fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_owned();
    }
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

const CPU_MODES: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];

/// `/proc/stat`: CPU time per core and mode, context switches, interrupts, forks, boot time,
/// running and blocked processes.
fn parse_stat(text: &str, user_hz: f64, out: &mut SampleWriter) {
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(key) = fields.next() else { continue };
        if let Some(cpu) = key.strip_prefix("cpu") {
            // The `cpu` line sums the cores; node_exporter reports the cores only, and so do we.
            if cpu.is_empty() {
                continue;
            }
            for (mode, ticks) in CPU_MODES.iter().zip(fields) {
                if let Ok(ticks) = ticks.parse::<f64>() {
                    out.push("cpu.seconds_total", ticks / user_hz, &[("cpu", cpu), ("mode", mode)]);
                }
            }
            continue;
        }
        let metric = match key {
            "ctxt" => "cpu.context_switches_total",
            "intr" => "cpu.interrupts_total",
            "btime" => "boot.time_seconds",
            "processes" => "process.forks_total",
            "procs_running" => "process.running",
            "procs_blocked" => "process.blocked",
            _ => continue,
        };
        if let Some(Ok(value)) = fields.next().map(str::parse::<f64>) {
            out.push(metric, value, &[]);
        }
    }
}

/// `/proc/meminfo`: every field as `meminfo.<Field>_bytes` (kB fields) or `meminfo.<Field>`
/// (counts such as `HugePages_Total`); `Active(anon)` becomes `Active_anon`, as in node_exporter.
fn parse_meminfo(text: &str, out: &mut SampleWriter) {
    let mut name = String::with_capacity(48);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else { continue };
        let mut fields = rest.split_ascii_whitespace();
        let Some(Ok(value)) = fields.next().map(str::parse::<f64>) else { continue };
        let kilobytes = fields.next() == Some("kB");
        name.clear();
        name.push_str("meminfo.");
        for c in key.chars() {
            match c {
                '(' => name.push('_'),
                ')' => {}
                c => name.push(c),
            }
        }
        if kilobytes {
            name.push_str("_bytes");
            out.push(&name, value * 1024.0, &[]);
        } else {
            out.push(&name, value, &[]);
        }
    }
}

/// The `/proc/vmstat` fields node_exporter's default reports: paging, swapping, faults, OOM kills.
fn parse_vmstat(text: &str, out: &mut SampleWriter) {
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else { continue };
        let metric = match key {
            "pgpgin" => "vmstat.pgpgin_total",
            "pgpgout" => "vmstat.pgpgout_total",
            "pswpin" => "vmstat.pswpin_total",
            "pswpout" => "vmstat.pswpout_total",
            "pgfault" => "vmstat.pgfault_total",
            "pgmajfault" => "vmstat.pgmajfault_total",
            "oom_kill" => "vmstat.oom_kill_total",
            _ => continue,
        };
        if let Ok(value) = value.trim().parse::<f64>() {
            out.push(metric, value, &[]);
        }
    }
}

/// `/proc/diskstats` fields after major, minor and name: `(metric, scale)`; sectors are 512
/// bytes whatever the device's block size, times are milliseconds.
const DISKSTATS: [(&str, f64); 15] = [
    ("disk.reads_completed_total", 1.0),
    ("disk.reads_merged_total", 1.0),
    ("disk.read_bytes_total", 512.0),
    ("disk.read_time_seconds_total", 0.001),
    ("disk.writes_completed_total", 1.0),
    ("disk.writes_merged_total", 1.0),
    ("disk.written_bytes_total", 512.0),
    ("disk.write_time_seconds_total", 0.001),
    ("disk.io_now", 1.0),
    ("disk.io_time_seconds_total", 0.001),
    ("disk.io_time_weighted_seconds_total", 0.001),
    ("disk.discards_completed_total", 1.0),
    ("disk.discards_merged_total", 1.0),
    ("disk.discarded_sectors_total", 1.0),
    ("disk.discard_time_seconds_total", 0.001),
];

fn parse_diskstats(text: &str, filter: &NameFilter, out: &mut SampleWriter) {
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace().skip(2);
        let Some(device) = fields.next() else { continue };
        if !filter.allows(device) {
            continue;
        }
        for ((metric, scale), value) in DISKSTATS.iter().zip(fields) {
            if let Ok(value) = value.parse::<f64>() {
                out.push(metric, value * scale, &[("device", device)]);
            }
        }
    }
}

const NET_DEV: [&str; 16] = [
    "net.receive_bytes_total",
    "net.receive_packets_total",
    "net.receive_errs_total",
    "net.receive_drop_total",
    "net.receive_fifo_total",
    "net.receive_frame_total",
    "net.receive_compressed_total",
    "net.receive_multicast_total",
    "net.transmit_bytes_total",
    "net.transmit_packets_total",
    "net.transmit_errs_total",
    "net.transmit_drop_total",
    "net.transmit_fifo_total",
    "net.transmit_colls_total",
    "net.transmit_carrier_total",
    "net.transmit_compressed_total",
];

fn parse_net_dev(text: &str, filter: &NameFilter, out: &mut SampleWriter) {
    for line in text.lines() {
        let Some((device, counters)) = line.split_once(':') else { continue };
        let device = device.trim();
        if !filter.allows(device) {
            continue;
        }
        for (metric, value) in NET_DEV.iter().zip(counters.split_ascii_whitespace()) {
            if let Ok(value) = value.parse::<f64>() {
                out.push(metric, value, &[("device", device)]);
            }
        }
    }
}

/// `/proc/pressure/<resource>`: the `total=` microseconds of its `some` line (`waiting`: at
/// least one task stalled) and `full` line (`stalled`: all non-idle tasks stalled). The CPU's
/// `full` line is always 0 at the system level; it is left out.
fn parse_pressure(resource: &str, text: &str, out: &mut SampleWriter) {
    for line in text.lines() {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        let metric = match (resource, kind) {
            ("cpu", "some") => "pressure.cpu_waiting_seconds_total",
            ("memory", "some") => "pressure.memory_waiting_seconds_total",
            ("memory", "full") => "pressure.memory_stalled_seconds_total",
            ("io", "some") => "pressure.io_waiting_seconds_total",
            ("io", "full") => "pressure.io_stalled_seconds_total",
            _ => continue,
        };
        if let Some(Ok(micros)) =
            rest.split_ascii_whitespace().find_map(|f| f.strip_prefix("total=")).map(str::parse::<f64>)
        {
            out.push(metric, micros / 1e6, &[]);
        }
    }
}

/// `/proc/sys/fs/file-nr`: allocated handles, (always 0) unused ones, the maximum.
fn parse_file_nr(text: &str, out: &mut SampleWriter) {
    let mut fields = text.split_ascii_whitespace().map(str::parse::<f64>);
    if let (Some(Ok(allocated)), Some(_), Some(Ok(maximum))) = (fields.next(), fields.next(), fields.next()) {
        out.push("filefd.allocated", allocated, &[]);
        out.push("filefd.maximum", maximum, &[]);
    }
}

/// `/proc/net/sockstat`: sockets in use, as `sockstat.<PROTO>_<field>`
/// (`sockstat.TCP_inuse`, `sockstat.TCP_tw`); `mem` is in pages and becomes `_mem_bytes`.
fn parse_sockstat(text: &str, out: &mut SampleWriter) {
    let page = rustix::param::page_size() as f64;
    let mut name = String::with_capacity(40);
    for line in text.lines() {
        let Some((protocol, rest)) = line.split_once(':') else { continue };
        let mut fields = rest.split_ascii_whitespace();
        while let (Some(field), Some(value)) = (fields.next(), fields.next()) {
            let Ok(value) = value.parse::<f64>() else { continue };
            name.clear();
            name.push_str("sockstat.");
            name.push_str(protocol);
            name.push('_');
            name.push_str(field);
            if field == "mem" {
                name.push_str("_bytes");
                out.push(&name, value * page, &[]);
            } else {
                out.push(&name, value, &[]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Sample;

    fn run(parse: impl FnOnce(&mut SampleWriter)) -> Vec<Sample> {
        let mut out = SampleWriter::new("h", 1, 1);
        parse(&mut out);
        out.samples
    }

    fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
        samples
            .iter()
            .find(|s| {
                s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .unwrap_or_else(|| panic!("no {metric} {labels:?}"))
            .value
    }

    #[test]
    fn stat_gives_cpu_seconds_per_core_and_mode_and_the_kernel_counters() {
        let text = "cpu  10 0 20 300 4 0 1 0 0 0\ncpu0 250 1 50 10000 7 3 2 5 0 0\n\
                    intr 12345 1 2 3\nctxt 999\nbtime 1764000000\nprocesses 4242\nprocs_running 3\nprocs_blocked 1\n";
        let samples = run(|out| parse_stat(text, 100.0, out));
        assert_eq!(samples.iter().filter(|s| s.metric == "cpu.seconds_total").count(), 8, "cpu0 only, 8 modes");
        assert_eq!(value(&samples, "cpu.seconds_total", &[("cpu", "0"), ("mode", "user")]), 2.5);
        assert_eq!(value(&samples, "cpu.seconds_total", &[("cpu", "0"), ("mode", "idle")]), 100.0);
        assert_eq!(value(&samples, "cpu.seconds_total", &[("cpu", "0"), ("mode", "steal")]), 0.05);
        assert_eq!(value(&samples, "cpu.interrupts_total", &[]), 12345.0);
        assert_eq!(value(&samples, "cpu.context_switches_total", &[]), 999.0);
        assert_eq!(value(&samples, "boot.time_seconds", &[]), 1_764_000_000.0);
        assert_eq!(value(&samples, "process.forks_total", &[]), 4242.0);
        assert_eq!(value(&samples, "process.running", &[]), 3.0);
        assert_eq!(value(&samples, "process.blocked", &[]), 1.0);
    }

    #[test]
    fn meminfo_fields_keep_their_names_with_units() {
        let text = "MemTotal:       16384 kB\nActive(anon):     100 kB\nHugePages_Total:       2\n";
        let samples = run(|out| parse_meminfo(text, out));
        assert_eq!(value(&samples, "meminfo.MemTotal_bytes", &[]), 16384.0 * 1024.0);
        assert_eq!(value(&samples, "meminfo.Active_anon_bytes", &[]), 102_400.0);
        assert_eq!(value(&samples, "meminfo.HugePages_Total", &[]), 2.0);
        for s in &samples {
            assert!(crate::sample::is_valid_name(&s.metric), "{}", s.metric);
        }
    }

    #[test]
    fn diskstats_are_scaled_and_filtered_by_device() {
        let text = " 254 0 vda 100 2 800 50 10 1 160 30 0 70 80 5 0 40 9 1 1\n\
                    254 1 vda1 1 1 1 1 1 1 1 1 0 1 1\n   7 0 loop0 0 0 0 0 0 0 0 0 0 0 0\n";
        let samples = run(|out| parse_diskstats(text, &Filters::default().disk, out));
        let devices: std::collections::BTreeSet<&str> = samples.iter().map(|s| s.labels["device"].as_str()).collect();
        assert_eq!(devices, ["vda"].into());
        assert_eq!(value(&samples, "disk.read_bytes_total", &[("device", "vda")]), 800.0 * 512.0);
        assert_eq!(value(&samples, "disk.io_time_seconds_total", &[("device", "vda")]), 0.07);
        assert_eq!(value(&samples, "disk.discards_completed_total", &[("device", "vda")]), 5.0);
        assert_eq!(samples.len(), 15);
    }

    #[test]
    fn net_dev_gives_errors_and_drops_per_interface() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes\n\
                    lo: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n  eth0: 5 6 7 8 0 0 0 0 9 10 11 12 0 0 0 0\n";
        let only_eth = NameFilter::new(None, Some(("net-exclude", "^lo$"))).unwrap();
        let samples = run(|out| parse_net_dev(text, &only_eth, out));
        assert_eq!(samples.len(), 16);
        assert_eq!(value(&samples, "net.receive_errs_total", &[("device", "eth0")]), 7.0);
        assert_eq!(value(&samples, "net.receive_drop_total", &[("device", "eth0")]), 8.0);
        assert_eq!(value(&samples, "net.transmit_errs_total", &[("device", "eth0")]), 11.0);
        assert_eq!(value(&samples, "net.transmit_drop_total", &[("device", "eth0")]), 12.0);
    }

    #[test]
    fn pressure_totals_are_seconds() {
        let text =
            "some avg10=1.00 avg60=0.50 avg300=0.10 total=2500000\nfull avg10=0 avg60=0 avg300=0 total=1000000\n";
        let samples = run(|out| parse_pressure("io", text, out));
        assert_eq!(value(&samples, "pressure.io_waiting_seconds_total", &[]), 2.5);
        assert_eq!(value(&samples, "pressure.io_stalled_seconds_total", &[]), 1.0);
        let cpu = run(|out| parse_pressure("cpu", text, out));
        assert_eq!(cpu.len(), 1, "the CPU's full line is not reported");
    }

    #[test]
    fn file_nr_and_sockstat() {
        let samples = run(|out| parse_file_nr("1111\t0\t2466297\n", out));
        assert_eq!(value(&samples, "filefd.allocated", &[]), 1111.0);
        assert_eq!(value(&samples, "filefd.maximum", &[]), 2_466_297.0);
        let text = "sockets: used 120\nTCP: inuse 5 orphan 0 tw 2 alloc 7 mem 3\n";
        let samples = run(|out| parse_sockstat(text, out));
        assert_eq!(value(&samples, "sockstat.TCP_inuse", &[]), 5.0);
        assert_eq!(value(&samples, "sockstat.sockets_used", &[]), 120.0);
        assert_eq!(value(&samples, "sockstat.TCP_mem_bytes", &[]), 3.0 * rustix::param::page_size() as f64);
    }

    #[test]
    fn a_bad_regex_names_its_key() {
        let err = NameFilter::new(Some(("disk-include", "sd[")), None).unwrap_err().to_string();
        assert!(err.contains("disk-include") && err.contains("sd["), "{err}");
    }

    #[test]
    fn filters_include_then_exclude() {
        let filter = NameFilter::new(Some(("net-include", "^(eth|en)")), Some(("net-exclude", "^eth1$"))).unwrap();
        assert!(filter.allows("eth0") && filter.allows("enp3s0"));
        assert!(!filter.allows("eth1") && !filter.allows("lo"));
        let fs = Filters::default().fs;
        assert!(fs.allows("/") && fs.allows("/home") && !fs.allows("/dev/shm"));
        assert!(!fs.allows("/var/lib/kubelet/pods/x") && fs.allows("/var/lib/kubelet"));
        let disk = Filters::default().disk;
        assert!(disk.allows("sda") && disk.allows("nvme0n1") && disk.allows("dm-0") && disk.allows("md0"));
        assert!(!disk.allows("sda1") && !disk.allows("nvme0n1p2") && !disk.allows("loop3"));
    }
}
