//! The procfs/sysfs families of one `microdash-agent --once` on this machine, checked against
//! the kernel's own files read just before and just after it, and against `df`. Counters must
//! lie between the two readings; sizes that do not move must be equal.

#![cfg(target_os = "linux")]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use microdash_agent::filter::{DEFAULT_DISK_EXCLUDE, DEFAULT_FS_EXCLUDE};

const AGENT_BIN: &str = env!("CARGO_BIN_EXE_microdash-agent");

struct Sample {
    metric: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

struct Collection(Vec<Sample>);

impl Collection {
    fn take() -> Collection {
        let out = Command::new(AGENT_BIN).args(["--once", "--host-label", "node-test"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        Collection(
            body["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| Sample {
                    metric: s["metric"].as_str().unwrap().to_owned(),
                    labels: serde_json::from_value(s["labels"].clone()).unwrap(),
                    value: s["value"].as_f64().unwrap(),
                })
                .collect(),
        )
    }

    fn all(&self, metric: &str) -> impl Iterator<Item = &Sample> {
        self.0.iter().filter(move |s| s.metric == metric)
    }

    fn get(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.all(metric)
            .find(|s| labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .unwrap_or_else(|| panic!("no {metric} {labels:?}"))
            .value
    }

    fn label_values(&self, metric: &str, key: &str) -> BTreeSet<String> {
        self.all(metric).map(|s| s.labels[key].clone()).collect()
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `value` within `[before, after]`, the two readings of a counter around the collection
/// (give or take the rounding of a unit conversion: milliseconds × 0.001 against ÷ 1000).
fn between(what: &str, before: f64, value: f64, after: f64) {
    let rounding = after.abs().max(1.0) * 1e-12;
    assert!(before - rounding <= value && value <= after + rounding, "{what}: {value} not within [{before}, {after}]");
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// `/proc/stat` per-core lines: `cpuN` → the tick counts.
fn cpu_ticks(stat: &str) -> BTreeMap<String, Vec<f64>> {
    stat.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let mut f = l.split_whitespace();
            let cpu = f.next().unwrap().trim_start_matches("cpu").to_owned();
            (cpu, f.map(|v| v.parse().unwrap()).collect())
        })
        .collect()
}

fn stat_field(stat: &str, key: &str) -> f64 {
    stat.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// `device` → its numbers in `/proc/diskstats` (after major, minor, name).
fn diskstats(text: &str) -> BTreeMap<String, Vec<f64>> {
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[2].to_owned(), f[3..].iter().map(|v| v.parse().unwrap()).collect())
        })
        .collect()
}

fn net_dev(text: &str) -> BTreeMap<String, Vec<f64>> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter_map(|(iface, rest)| {
            let values: Option<Vec<f64>> = rest.split_whitespace().map(|v| v.parse().ok()).collect();
            Some((iface.trim().to_owned(), values?))
        })
        .collect()
}

fn pressure_total(text: &str, kind: &str) -> f64 {
    let line = text.lines().find(|l| l.starts_with(kind)).unwrap();
    line.split_whitespace().find_map(|f| f.strip_prefix("total=")).unwrap().parse::<f64>().unwrap() / 1e6
}

#[test]
fn cpu_memory_kernel_counters_disks_and_interfaces_match_proc() {
    let (stat_0, disks_0, net_0) = (read("/proc/stat"), read("/proc/diskstats"), read("/proc/net/dev"));
    let psi_0 = std::fs::read_to_string("/proc/pressure/io").ok();
    let c = Collection::take();
    let (stat_1, disks_1, net_1) = (read("/proc/stat"), read("/proc/diskstats"), read("/proc/net/dev"));
    let psi_1 = std::fs::read_to_string("/proc/pressure/io").ok();

    // CPU seconds per core and mode.
    let hz = clock_ticks();
    let (ticks_0, ticks_1) = (cpu_ticks(&stat_0), cpu_ticks(&stat_1));
    assert_eq!(c.label_values("cpu.seconds_total", "cpu"), ticks_0.keys().cloned().collect());
    for (i, mode) in ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"].iter().enumerate() {
        for cpu in ticks_0.keys() {
            let value = c.get("cpu.seconds_total", &[("cpu", cpu), ("mode", mode)]);
            // The kernel's idle/iowait may step back by a tick between reads (NO_HZ accounting).
            between(&format!("cpu {cpu} {mode}"), ticks_0[cpu][i] / hz - 0.02, value, ticks_1[cpu][i] / hz + 0.02);
        }
    }
    between("ctxt", stat_field(&stat_0, "ctxt"), c.get("cpu.context_switches_total", &[]), stat_field(&stat_1, "ctxt"));
    between(
        "forks",
        stat_field(&stat_0, "processes"),
        c.get("process.forks_total", &[]),
        stat_field(&stat_1, "processes"),
    );
    assert_eq!(c.get("boot.time_seconds", &[]), stat_field(&stat_0, "btime"));
    assert!(c.get("process.running", &[]) >= 1.0, "at least the agent itself runs");

    // Every /proc/meminfo field, MemTotal exactly.
    let meminfo = read("/proc/meminfo");
    for line in meminfo.lines() {
        let (key, rest) = line.split_once(':').unwrap();
        let name = key.replace('(', "_").replace(')', "");
        let metric =
            if rest.trim_end().ends_with("kB") { format!("meminfo.{name}_bytes") } else { format!("meminfo.{name}") };
        assert!(c.all(&metric).next().is_some(), "missing {metric}");
    }
    let mem_total: f64 = meminfo.lines().next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(c.get("meminfo.MemTotal_bytes", &[]), mem_total * 1024.0);

    // Block devices: those of /proc/diskstats less the default exclusion, with I/O between reads.
    let exclude = regex_lite::Regex::new(DEFAULT_DISK_EXCLUDE).unwrap();
    let (d0, d1) = (diskstats(&disks_0), diskstats(&disks_1));
    let expected: BTreeSet<String> = d0.keys().filter(|d| !exclude.is_match(d)).cloned().collect();
    assert!(!expected.is_empty(), "this machine has a disk: {disks_0}");
    assert_eq!(c.label_values("disk.reads_completed_total", "device"), expected);
    for device in &expected {
        let labels = [("device", device.as_str())];
        between("reads", d0[device][0], c.get("disk.reads_completed_total", &labels), d1[device][0]);
        between("read bytes", d0[device][2] * 512.0, c.get("disk.read_bytes_total", &labels), d1[device][2] * 512.0);
        between("written", d0[device][6] * 512.0, c.get("disk.written_bytes_total", &labels), d1[device][6] * 512.0);
        between("io time", d0[device][9] / 1e3, c.get("disk.io_time_seconds_total", &labels), d1[device][9] / 1e3);
    }

    // Interfaces: every one of /proc/net/dev, errors and drops between reads.
    let (n0, n1) = (net_dev(&net_0), net_dev(&net_1));
    assert_eq!(c.label_values("net.receive_bytes_total", "device"), n0.keys().cloned().collect());
    for (iface, values) in &n0 {
        let labels = [("device", iface.as_str())];
        between("rx bytes", values[0], c.get("net.receive_bytes_total", &labels), n1[iface][0]);
        between("rx errs", values[2], c.get("net.receive_errs_total", &labels), n1[iface][2]);
        between("rx drop", values[3], c.get("net.receive_drop_total", &labels), n1[iface][3]);
        between("tx bytes", values[8], c.get("net.transmit_bytes_total", &labels), n1[iface][8]);
        between("tx drop", values[11], c.get("net.transmit_drop_total", &labels), n1[iface][11]);
    }

    // Pressure, file handles, entropy: present where the kernel has them.
    match (psi_0, psi_1) {
        (Some(p0), Some(p1)) => {
            let value = c.get("pressure.io_waiting_seconds_total", &[]);
            between("io pressure", pressure_total(&p0, "some"), value, pressure_total(&p1, "some"));
        }
        _ => assert!(c.all("pressure.io_waiting_seconds_total").next().is_none()),
    }
    let file_nr: Vec<f64> = read("/proc/sys/fs/file-nr").split_whitespace().map(|v| v.parse().unwrap()).collect();
    assert_eq!(c.get("filefd.maximum", &[]), file_nr[2]);
    assert!(c.get("filefd.allocated", &[]) > 0.0);
    assert!(c.all("entropy.available_bits").next().is_some());

    // Temperatures: one sample per temp*_input of /sys/class/hwmon (none in a VM without sensors).
    let sensors = std::fs::read_dir("/sys/class/hwmon")
        .map(|chips| {
            chips
                .flatten()
                .flat_map(|chip| std::fs::read_dir(chip.path()).into_iter().flatten().flatten())
                .filter(|f| {
                    let name = f.file_name().to_string_lossy().into_owned();
                    name.starts_with("temp") && name.ends_with("_input")
                })
                .count()
        })
        .unwrap_or(0);
    assert_eq!(c.all("hwmon.temp_celsius").count(), sensors);
}

/// `df` for one mount point: size, available bytes, inodes and free inodes.
fn df(mount: &str) -> Option<[f64; 4]> {
    let out = Command::new("df")
        .args(["-B1", "--output=target,size,avail,itotal,iavail", mount])
        .output()
        .expect("df (coreutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1)?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    // The target may hold spaces: the numbers are the last four fields.
    let n = fields.len();
    (fields[..n - 4].join(" ") == mount).then(|| {
        let v = |i: usize| fields[n - 4 + i].parse::<f64>().unwrap_or(0.0);
        [v(0), v(1), v(2), v(3)]
    })
}

#[test]
fn filesystems_match_df_with_inodes_and_read_only_state() {
    let c = Collection::take();
    let mounts = c.label_values("fs.size_bytes", "mount");
    assert!(mounts.contains("/"), "{mounts:?}");
    let exclude = regex_lite::Regex::new(DEFAULT_FS_EXCLUDE).unwrap();
    assert!(!mounts.iter().any(|m| exclude.is_match(m)), "{mounts:?}");
    let table = read("/proc/self/mounts");
    for mount in &mounts {
        let [size, avail, inodes, inodes_free] = df(mount).unwrap_or_else(|| panic!("df does not know {mount}"));
        let labels = [("mount", mount.as_str())];
        assert_eq!(c.get("fs.size_bytes", &labels), size, "{mount}");
        // Other work writes to disk between the two readings: within 1% of the size.
        let slack = size / 100.0;
        let agent_avail = c.get("fs.avail_bytes", &labels);
        assert!((agent_avail - avail).abs() <= slack, "{mount}: avail {agent_avail} vs df {avail}");
        assert!(c.get("fs.free_bytes", &labels) >= agent_avail);
        assert_eq!(c.get("fs.files", &labels), inodes, "{mount}");
        let agent_free = c.get("fs.files_free", &labels);
        assert!((agent_free - inodes_free).abs() <= inodes / 100.0 + 1.0, "{mount}: {agent_free} vs {inodes_free}");
        // Read-only as the visible (last) mount on that point says.
        let options = table
            .lines()
            .rev()
            .find(|l| l.split_whitespace().nth(1) == Some(mount.replace(' ', "\\040").as_str()))
            .and_then(|l| l.split_whitespace().nth(3))
            .unwrap()
            .to_owned();
        let readonly = options.split(',').any(|o| o == "ro");
        assert_eq!(c.get("fs.readonly", &labels), f64::from(u8::from(readonly)), "{mount}: {options}");
    }
}

#[test]
fn a_bad_filter_regex_is_refused_naming_the_flag() {
    let out = Command::new(AGENT_BIN).args(["--once", "--disk-exclude", "sd["]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("disk-exclude") && stderr.contains("sd["), "{stderr}");

    let out = Command::new(AGENT_BIN).args(["--once", "--net-include", "^lo$"]).output().unwrap();
    assert!(out.status.success());
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ifaces: BTreeSet<&str> = body["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["metric"] == "net.receive_bytes_total")
        .map(|s| s["labels"]["device"].as_str().unwrap())
        .collect();
    assert_eq!(ifaces, BTreeSet::from(["lo"]));
}
