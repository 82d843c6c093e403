//! The microdash Kubernetes operator: CRDs of group `microdash.io/v1alpha1` and their
//! reconcilers. The binary is `microdash-operator`; `crdgen` prints the CRDs.

pub mod conditions;
pub mod context;
pub mod controllers;
pub mod error;
pub mod metrics;
pub mod resources;
pub mod run;
pub mod server;
pub mod uninstall;

pub use error::{Error, Result};
