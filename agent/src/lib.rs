//! microdash-agent: host metrics from sysinfo, shipped to microdash over HTTP, with a disk
//! spool that survives outages and restarts.

pub mod collector;
pub mod config;
pub mod error;
pub mod filter;
pub mod kube;
#[cfg(target_os = "linux")]
pub mod node;
pub mod sample;
pub mod scrape;
pub mod service;
pub mod shipper;
pub mod sink;
pub mod spool;
pub mod systemd;

pub use error::{Error, Result};
