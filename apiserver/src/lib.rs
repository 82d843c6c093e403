//! microdash: multi-tenant metrics ingest, storage, query, live stream and admin API.
//!
//! Layers: `domain` (pure types and rules), use cases (`ingest`, `tenants`, `pipeline`),
//! adapters (`storage`, `http`, `live`, `mqtt`), and `server` wiring them together.

pub mod alerting;
pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod exporters;
pub mod fairness;
pub mod http;
pub mod ingest;
pub mod limits;
pub mod live;
pub mod mcp;
pub mod mqtt;
pub mod outbound;
pub mod pipeline;
pub mod retention;
pub mod series_select;
pub mod server;
pub mod storage;
pub mod telemetry;
pub mod tenants;
