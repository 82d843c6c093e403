//! Prometheus remote_write ingest (issue 18): the same snappy-compressed protobuf requests, the
//! corpus of the storage section (one metric over 100 series with 2 labels), sent as fast as
//! answers come back to microdash's `/api/v1/write` (SQLite, embedded) and to VictoriaMetrics'
//! `/api/v1/write`, in the same run.

use std::path::Path;

use anyhow::Result;
use prost::Message;

use crate::{Load, MqttMode, Target, start_server, storage, sustained_ingest};

#[derive(Clone, PartialEq, Message)]
struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
struct Label {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct Sample {
    #[prost(double, tag = "1")]
    value: f64,
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

/// One request of `batch` samples: 100 series (`bench_cpu{host, dc}`), each with its share of
/// the batch at 1 ms steps from `start_ts`, as Prometheus sends a series' samples together.
pub fn body(batch: usize, start_ts: i64) -> Vec<u8> {
    let per_series = batch.div_ceil(100);
    let timeseries = (0..100.min(batch))
        .map(|host| {
            let n = (0..per_series).filter(|k| k * 100 + host < batch).count();
            let label = |name: &str, value: String| Label { name: name.into(), value };
            TimeSeries {
                labels: vec![
                    label("__name__", "bench_cpu".into()),
                    label("dc", "eu-1".into()),
                    label("host", format!("h{host}")),
                ],
                samples: (0..n).map(|k| Sample { value: host as f64, timestamp: start_ts + k as i64 }).collect(),
            }
        })
        .collect();
    snap::raw::Encoder::new().compress_vec(&WriteRequest { timeseries }.encode_to_vec()).expect("snappy")
}

pub async fn run(server_bin: &Path, victoria_bin: &Path, load: Load) -> Result<String> {
    eprintln!("[remote_write] microdash (SQLite, embedded) for {} s", load.seconds);
    let server = start_server(server_bin, MqttMode::Off)?;
    let target = Target::RemoteWrite { base: server.base.clone(), token: Some(server.token.clone()) };
    let ours = sustained_ingest(&target, &[server.process.pid()], load).await?;
    drop(server);
    eprintln!("[remote_write] VictoriaMetrics for {} s", load.seconds);
    let vm = storage::start_victoria(victoria_bin).await?;
    let target = Target::RemoteWrite { base: vm.base.clone(), token: None };
    let theirs = sustained_ingest(&target, &[vm.child.0.id()], load).await?;
    drop(vm);
    let mut out = format!(
        "## Prometheus remote_write ingest, next to VictoriaMetrics\n\n\
         The same remote_write 1.0 requests (snappy-compressed protobuf, {batch} samples of one metric over 100 \
         series with 2 labels, every sample new) from {conns} connections for {secs} s, as fast as answers come \
         back, to microdash's `/api/v1/write` (SQLite, embedded; a 2xx means committed) and to VictoriaMetrics' \
         `/api/v1/write` (a 204 means buffered, as in the storage section). The client encodes each request \
         (the same cost for both).\n\n\
         | setup | samples/s | vs VM | requests ok / failed | peak RSS |\n|---|---|---|---|---|\n",
        batch = load.batch,
        conns = load.connections,
        secs = load.seconds,
    );
    for (name, row) in
        [("microdash, SQLite, `/api/v1/write`", &ours), ("VictoriaMetrics (Debian), `/api/v1/write`", &theirs)]
    {
        out.push_str(&format!(
            "| {name} | {:.0} | {:.2}× | {} / {} | {:.0} MiB |\n",
            row.samples_per_sec,
            row.samples_per_sec / theirs.samples_per_sec,
            row.requests,
            row.errors,
            row.peak_rss_mib,
        ));
    }
    Ok(out)
}
