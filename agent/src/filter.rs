//! Which devices, interfaces and mount points the per-device families report: include and
//! exclude regexes per kind, set by `disk-include`/`disk-exclude`, `net-…` and `fs-…`.

use regex_lite::Regex;

use crate::error::{Error, Result};

/// node_exporter's `--collector.diskstats.device-exclude` default: partitions, loop, RAM and
/// floppy devices; whole disks, device-mapper and md devices stay.
pub const DEFAULT_DISK_EXCLUDE: &str = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme[0-9]+n[0-9]+p)[0-9]+$";
/// Mount points under kernel and container-runtime trees (node_exporter's default, plus
/// kubelet's and containerd's pod mounts).
pub const DEFAULT_FS_EXCLUDE: &str = r"^/(dev|proc|sys|run/credentials/.+|var/lib/docker/.+|var/lib/containers/storage/.+|var/lib/kubelet/.+|run/containerd/.+)($|/)";

/// Include/exclude regexes on a device or mount point name. A name is collected when it
/// matches `include` (or there is none) and does not match `exclude`.
#[derive(Debug, Clone, Default)]
pub struct NameFilter {
    pub include: Option<Regex>,
    pub exclude: Option<Regex>,
}

impl NameFilter {
    /// `key` names the configuration key in the error of a bad regex (`disk-exclude`).
    pub fn new(include: Option<(&str, &str)>, exclude: Option<(&str, &str)>) -> Result<Self> {
        let compile = |(key, pattern): (&str, &str)| {
            Regex::new(pattern).map_err(|e| Error::config(format!("{key} `{pattern}` is not a valid regex: {e}")))
        };
        Ok(Self { include: include.map(compile).transpose()?, exclude: exclude.map(compile).transpose()? })
    }

    pub fn allows(&self, name: &str) -> bool {
        self.include.as_ref().is_none_or(|r| r.is_match(name))
            && !self.exclude.as_ref().is_some_and(|r| r.is_match(name))
    }
}

/// Which devices and filesystems the per-device families report.
#[derive(Debug, Clone)]
pub struct Filters {
    /// Block devices of `disk.*` (kernel names such as `vda`, `nvme0n1`, `dm-0`).
    pub disk: NameFilter,
    /// Interfaces of `net.*` (`eth0`, `lo`, `veth1234`).
    pub net: NameFilter,
    /// Mount points of `fs.*`.
    pub fs: NameFilter,
}

impl Default for Filters {
    fn default() -> Self {
        Self {
            disk: NameFilter::new(None, Some(("disk-exclude", DEFAULT_DISK_EXCLUDE))).expect("default regex"),
            net: NameFilter::default(),
            fs: NameFilter::new(None, Some(("fs-exclude", DEFAULT_FS_EXCLUDE))).expect("default regex"),
        }
    }
}
