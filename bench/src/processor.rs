//! `sluice-bench processor`: records per second per core through the
//! `filter-json` plugin, beside the same filter compiled natively, in the
//! same run.
//!
//! Workload: 100-byte JSON records (`{"id":…,"kind":…,"amount":…,…}`),
//! condition `amount >= 500` (keeps about half), batches of `--batch`.
//!
//! - **call**: the `process` call alone (lowering the batch into the
//!   sandbox, the filter, lifting the outputs), against the filter's own
//!   Rust function (`filter_json::matches`) called natively per record.
//! - **end to end**: log → plugin → output log, through the processor loop
//!   the broker runs (read, decode, invoke, route, append, commit), against
//!   the same loop with the native filter in place of the plugin, and the
//!   same loop forwarding everything natively (the log's own floor).
//! - **soak** (`--soak-secs`): one instance processing without pause; its
//!   linear memory and the process RSS sampled ten times.
//!
//! Every figure is the median of `--runs` runs on one thread, so records/s
//! is records/s/core.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use serde::Serialize;

use sluice::log::batch;
use sluice::processor::host::{
    Batch, Factory, InputRecord, Instance, Invoke, InvokeError, Label, Output, Payload, Plugin,
    Runtime, TaskContext,
};
use sluice::processor::scratch::{ForwardAll, Scratch};
use sluice::processor::spec::Limits;

use crate::{median, OutputFormat};

/// Options of `sluice-bench processor`.
#[derive(Debug, Args)]
pub(crate) struct ProcessorBenchArgs {
    /// The filter-json component (bench/run-processor-bench builds it).
    #[arg(long, value_name = "FILE")]
    pub wasm: PathBuf,
    /// The noop component (keeps every other record unread): its call is
    /// measured too, as the cost of the boundary around the filter.
    #[arg(long, value_name = "FILE")]
    pub noop_wasm: Option<PathBuf>,
    /// The buffer-probe component (`bench/probe`): noop's work with the
    /// batch carried as one byte buffer and an index (`probe.rs`),
    /// measured beside noop's call.
    #[arg(long, value_name = "FILE")]
    pub buffer_probe_wasm: Option<PathBuf>,
    /// Records per run.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: usize,
    /// Records per `process` call.
    #[arg(long, default_value_t = 1_024)]
    pub batch: usize,
    /// Runs per figure (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Also keep one instance busy this long, sampling its memory.
    #[arg(long, default_value_t = 0)]
    pub soak_secs: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Config for the plugin instead of filter-json's (to measure another
    /// plugin's call, e.g. a pass-through, against the same baseline).
    #[arg(long, value_name = "K=V", value_parser = parse_pair, hide = true)]
    pub wasm_config: Vec<(String, String)>,
    /// Measure the `process` call only (skip end to end), e.g. to profile it.
    #[arg(long, hide = true)]
    pub call_only: bool,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected K=V, got {text:?}"))
}

#[derive(Debug, Serialize)]
struct Report {
    records: usize,
    record_bytes: usize,
    batch: usize,
    runs: usize,
    call_wasm_records_s: f64,
    call_native_records_s: f64,
    call_ratio: f64,
    /// The same call with the noop plugin (no filter work): the boundary.
    call_noop_wasm_records_s: Option<f64>,
    /// noop's work with the batch as one buffer and an index.
    call_buffer_probe_records_s: Option<f64>,
    end_to_end_wasm_records_s: f64,
    end_to_end_native_records_s: f64,
    end_to_end_forward_records_s: f64,
    end_to_end_ratio: f64,
    soak: Vec<SoakSample>,
}

#[derive(Debug, Serialize)]
struct SoakSample {
    elapsed_s: u64,
    records: u64,
    instance_memory_bytes: usize,
    process_rss_bytes: u64,
}

/// The filter's config, for the plugin and the native baseline alike.
const CONFIG: [(&str, &str); 2] = [("field", "amount"), ("gte", "500")];

/// Runs the benchmark and prints the report.
pub(crate) fn run(args: &ProcessorBenchArgs) -> anyhow::Result<()> {
    let wasm =
        std::fs::read(&args.wasm).with_context(|| format!("reading {}", args.wasm.display()))?;
    let runtime = Runtime::new(None)?;
    let plugin = runtime.compile(&wasm)?;
    let config = plugin_config(args);
    let condition: filter_json::Condition =
        sluice_sdk::config::from_pairs(&CONFIG).map_err(|e| anyhow::anyhow!("{e}"))?;
    let wasm_factory = plugin.factory(Limits::default(), config, label("bench"));
    let native_condition = condition.clone();
    let native_factory: Factory =
        Arc::new(move || Ok(Box::new(NativeFilter(native_condition.clone())) as Box<dyn Invoke>));
    let forward_factory = ForwardAll::factory();
    let values = values(args.records);
    let batches = batches(&values, args.batch);

    let mut samples = Samples::default();
    let mut instance = wasm_factory().map_err(|e| anyhow::anyhow!("{e}"))?;
    call_once(instance.as_mut(), &batches)?; // warm-up
    let mut noop = match &args.noop_wasm {
        Some(path) => Some(noop_instance(&runtime, path, &batches)?),
        None => None,
    };
    let mut probe = match &args.buffer_probe_wasm {
        Some(path) => {
            let mut probe = crate::probe::BufferProbe::new(path)?;
            probe_once(&mut probe, &batches)?; // warm-up
            Some(probe)
        }
        None => None,
    };
    for run in 0..args.runs {
        eprintln!("run {}/{}", run + 1, args.runs);
        samples.call_wasm.push(rate(args.records, || {
            call_once(instance.as_mut(), &batches)
        })?);
        samples
            .call_native
            .push(rate(args.records, || native_once(&condition, &values))?);
        if let Some(noop) = noop.as_mut() {
            samples
                .call_noop
                .push(rate(args.records, || call_once(noop, &batches))?);
        }
        if let Some(probe) = probe.as_mut() {
            samples
                .call_buffer_probe
                .push(rate(args.records, || probe_once(probe, &batches))?);
        }
        if args.call_only {
            continue;
        }
        let end_to_end_with = |factory: &Factory| end_to_end(&values, args.batch, factory);
        samples
            .end_to_end_wasm
            .push(end_to_end_with(&wasm_factory)?);
        samples
            .end_to_end_native
            .push(end_to_end_with(&native_factory)?);
        samples
            .end_to_end_forward
            .push(end_to_end_with(&forward_factory)?);
    }
    let soak = soak(&plugin, &batches, args.soak_secs)?;
    print(
        &samples.into_report(args, values[0].len(), soak),
        args.format,
    )
}

/// The plugin's config: `--wasm-config` if given, else the filter's.
fn plugin_config(args: &ProcessorBenchArgs) -> Vec<(String, String)> {
    if args.wasm_config.is_empty() {
        CONFIG
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    } else {
        args.wasm_config.clone()
    }
}

fn label(processor: &str) -> Label {
    Label {
        processor: processor.into(),
        topic: "in".into(),
        partition: 0,
        task: 0,
        stores: Vec::new().into(),
        tables: Vec::new().into(),
    }
}

/// An instance of the noop component at `path`, warmed up on `batches`.
fn noop_instance(
    runtime: &Runtime,
    path: &Path,
    batches: &[Vec<InputRecord>],
) -> anyhow::Result<Instance> {
    let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut noop = Instance::new(
        &runtime.compile(&wasm)?,
        Limits::default(),
        &[],
        label("bench-noop"),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    call_once(&mut noop, batches)?;
    Ok(noop)
}

/// Every run's records/s, before the medians are taken.
#[derive(Default)]
struct Samples {
    call_wasm: Vec<f64>,
    call_native: Vec<f64>,
    call_noop: Vec<f64>,
    call_buffer_probe: Vec<f64>,
    end_to_end_wasm: Vec<f64>,
    end_to_end_native: Vec<f64>,
    end_to_end_forward: Vec<f64>,
}

impl Samples {
    fn into_report(
        mut self,
        args: &ProcessorBenchArgs,
        record_bytes: usize,
        soak: Vec<SoakSample>,
    ) -> Report {
        let call_wasm = median(&mut self.call_wasm);
        let call_native = median(&mut self.call_native);
        let e2e_wasm = median(&mut self.end_to_end_wasm);
        let e2e_native = median(&mut self.end_to_end_native);
        Report {
            records: args.records,
            record_bytes,
            batch: args.batch,
            runs: args.runs,
            call_wasm_records_s: call_wasm,
            call_native_records_s: call_native,
            call_ratio: call_wasm / call_native,
            call_noop_wasm_records_s: (!self.call_noop.is_empty())
                .then(|| median(&mut self.call_noop)),
            call_buffer_probe_records_s: (!self.call_buffer_probe.is_empty())
                .then(|| median(&mut self.call_buffer_probe)),
            end_to_end_wasm_records_s: e2e_wasm,
            end_to_end_native_records_s: e2e_native,
            end_to_end_forward_records_s: median(&mut self.end_to_end_forward),
            end_to_end_ratio: e2e_wasm / e2e_native,
            soak,
        }
    }
}

/// The same filter, natively: forwards what it keeps.
struct NativeFilter(filter_json::Condition);

impl Invoke for NativeFilter {
    fn process(
        &mut self,
        batch: Batch<'_>,
        _task: &mut TaskContext,
    ) -> Result<Vec<Output>, InvokeError> {
        let mut outputs = Vec::with_capacity(batch.records.len());
        for (index, record) in batch.records.iter().enumerate() {
            let value = record.value.as_deref().unwrap_or_default();
            let keep = filter_json::matches(value, &self.0).map_err(|e| InvokeError::Rejected {
                message: e.to_string(),
                source: Some(index as u32),
            })?;
            if keep {
                outputs.push(Output {
                    source: index as u32,
                    topic: None,
                    payload: Payload::Forward,
                });
            }
        }
        Ok(outputs)
    }
}

/// `count` JSON values of exactly 100 bytes.
fn values(count: usize) -> Vec<Vec<u8>> {
    let kinds = ["click", "view", "scroll"];
    (0..count)
        .map(|i| {
            let mut value = format!(
                r#"{{"id":{i},"kind":"{}","amount":{},"user":"u{}","pad":""#,
                kinds[i % 3],
                (i * 7919) % 1000,
                i % 10_000
            );
            while value.len() < 98 {
                value.push('x');
            }
            value.push_str("\"}");
            value.into_bytes()
        })
        .collect()
}

/// The records, in batches of `size`.
fn batches(values: &[Vec<u8>], size: usize) -> Vec<Vec<InputRecord>> {
    values
        .chunks(size.max(1))
        .enumerate()
        .map(|(chunk, values)| {
            values
                .iter()
                .enumerate()
                .map(|(i, value)| InputRecord {
                    offset: (chunk * size + i) as i64,
                    timestamp: 1_700_000_000_000,
                    key: None,
                    value: Some(Bytes::copy_from_slice(value)),
                    headers: Vec::new(),
                })
                .collect()
        })
        .collect()
}

fn batch(records: &[InputRecord]) -> Batch<'_> {
    Batch {
        topic: "in",
        partition: 0,
        records,
    }
}

fn rate(records: usize, work: impl FnOnce() -> anyhow::Result<usize>) -> anyhow::Result<f64> {
    let started = Instant::now();
    let kept = work()?;
    std::hint::black_box(kept);
    Ok(records as f64 / started.elapsed().as_secs_f64())
}

fn call_once(instance: &mut dyn Invoke, batches: &[Vec<InputRecord>]) -> anyhow::Result<usize> {
    let mut kept = 0;
    for records in batches {
        kept += instance
            .process(batch(records), &mut TaskContext::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .len();
    }
    Ok(kept)
}

fn probe_once(
    probe: &mut crate::probe::BufferProbe,
    batches: &[Vec<InputRecord>],
) -> anyhow::Result<usize> {
    let mut kept = 0;
    for records in batches {
        kept += probe.call(records)?;
    }
    Ok(kept)
}

fn native_once(condition: &filter_json::Condition, values: &[Vec<u8>]) -> anyhow::Result<usize> {
    let mut kept = 0;
    for value in values {
        kept += usize::from(
            filter_json::matches(value, condition).map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    Ok(kept)
}

/// Records/s through the processor loop: a fresh store with the input
/// already written; the clock runs from the first step to the commit of
/// the last record.
fn end_to_end(values: &[Vec<u8>], batch_records: usize, factory: &Factory) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir_in(".").context("temporary directory")?;
    let scratch = Scratch::open(dir.path())?;
    let input = scratch.store.partition("in", 0)?;
    for chunk in values.chunks(1_000) {
        let entries: Vec<batch::build::Entry> = chunk
            .iter()
            .map(|v| (None, Some(v.clone()), 1_700_000_000_000))
            .collect();
        input.append(&batch::build::batch(
            &entries,
            kafka_protocol::records::Compression::None,
        ))?;
    }
    let limits = Limits {
        batch_records_max: batch_records as u64,
        batch_bytes_max: 64 << 20,
        ..Limits::default()
    };
    let mut task = scratch.task("bench", factory.clone(), limits);
    let end = input.high_watermark();
    let started = Instant::now();
    while task.position() < end {
        task.step().map_err(|f| anyhow::anyhow!("{}", f.message))?;
    }
    let elapsed = started.elapsed();
    scratch.store.close()?;
    Ok(values.len() as f64 / elapsed.as_secs_f64())
}

/// Keeps one instance busy for `seconds`, sampling memory ten times.
fn soak(
    plugin: &Plugin,
    batches: &[Vec<InputRecord>],
    seconds: u64,
) -> anyhow::Result<Vec<SoakSample>> {
    if seconds == 0 {
        return Ok(Vec::new());
    }
    let label = Label {
        processor: "soak".into(),
        topic: "in".into(),
        partition: 0,
        task: 0,
        stores: Vec::new().into(),
        tables: Vec::new().into(),
    };
    let config: Vec<(String, String)> = CONFIG
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut instance = Instance::new(plugin, Limits::default(), &config, label)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    let interval = Duration::from_secs(seconds) / 10;
    let mut next_sample = started;
    let mut records = 0u64;
    let mut samples = Vec::new();
    loop {
        let now = Instant::now();
        if now >= next_sample {
            samples.push(SoakSample {
                elapsed_s: now.duration_since(started).as_secs(),
                records,
                instance_memory_bytes: instance.memory_bytes(),
                process_rss_bytes: rss_bytes(),
            });
            eprintln!("soak: {:?} {records} records", now.duration_since(started));
            if now.duration_since(started) >= Duration::from_secs(seconds) {
                return Ok(samples);
            }
            next_sample += interval;
        }
        for records_of in batches.iter().take(64) {
            instance
                .process(batch(records_of), &mut TaskContext::default())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            records += records_of.len() as u64;
        }
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn print(report: &Report, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return crate::emit(&format!("{}\n", serde_json::to_string_pretty(report)?));
    }
    let m = |r: f64| format!("{:.2}M records/s", r / 1e6);
    let mut text = format!(
        "filter-json, {} records of {} bytes, batches of {}, median of {} runs, one thread\n\n",
        report.records, report.record_bytes, report.batch, report.runs
    );
    text.push_str(&format!(
        "process call   wasm {:>20}   native {:>20}   wasm/native {:.2}\n",
        m(report.call_wasm_records_s),
        m(report.call_native_records_s),
        report.call_ratio
    ));
    if let Some(noop) = report.call_noop_wasm_records_s {
        text.push_str(&format!(
            "process call   noop plugin (boundary alone) {:>20}\n",
            m(noop)
        ));
    }
    if let Some(probe) = report.call_buffer_probe_records_s {
        let ratio = report
            .call_noop_wasm_records_s
            .map_or(String::new(), |noop| {
                format!("   buffer/noop {:.2}", probe / noop)
            });
        text.push_str(&format!(
            "process call   noop's work, batch as one buffer + index {:>20}{ratio}\n",
            m(probe)
        ));
    }
    text.push_str(&format!(
        "end to end     wasm {:>20}   native {:>20}   wasm/native {:.2}   (native forward-all floor {})\n",
        m(report.end_to_end_wasm_records_s),
        m(report.end_to_end_native_records_s),
        report.end_to_end_ratio,
        m(report.end_to_end_forward_records_s)
    ));
    if !report.soak.is_empty() {
        text.push_str("\nsoak: elapsed_s records instance_memory_bytes process_rss_bytes\n");
        for s in &report.soak {
            text.push_str(&format!(
                "{:>6} {:>14} {:>12} {:>12}\n",
                s.elapsed_s, s.records, s.instance_memory_bytes, s.process_rss_bytes
            ));
        }
    }
    crate::emit(&text)
}
