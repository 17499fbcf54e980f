//! `GET /metrics`: Prometheus' text format, encoded by `prometheus-client`
//! from what the broker already keeps, read at each scrape: the hot-path
//! instruments of `crate::metrics` (requests, latencies, fsyncs,
//! connections, per-partition traffic), the log (sizes, offsets), the
//! groups (members, committed offsets, lag) and the processors (counters,
//! lag, batch latency, state), plus the process (RSS, CPU, open files).
//!
//! Cardinality: series per topic, group, processor and API are always on;
//! series per partition (offsets, a group's lag, a processor's task) are
//! on unless `[metrics] partition_series = false`, and then summed per
//! topic or processor. Nothing is labelled by client id or member.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kafka_protocol::messages::ApiKey;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::metrics::{Histogram, Snapshot, Traffic, FSYNC, REQUESTS};
use crate::processor::Processors;
use crate::server::BrokerContext;

/// `[metrics]`: what `/metrics` exposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    /// Record the request, traffic, fsync and batch instruments (the
    /// figures read from state are served either way). Default true.
    pub(crate) enabled: bool,
    /// Series per partition (offsets, group lag, processor tasks); off,
    /// they are summed per topic or processor, for large deployments.
    /// Default true.
    pub(crate) partition_series: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            partition_series: true,
        }
    }
}

/// What a scrape reads.
pub(crate) struct Sources {
    pub(crate) broker: Arc<BrokerContext>,
    pub(crate) processors: Arc<Processors>,
    pub(crate) started: Instant,
    pub(crate) config: MetricsConfig,
}

pub(super) fn routes(sources: Sources) -> Router {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(sources));
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(registry))
}

async fn scrape(State(registry): State<Arc<Registry>>) -> Response {
    // Reading sizes and offsets takes the partitions' locks: off the
    // async workers.
    let encoded = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).map(|()| text)
    })
    .await;
    match encoded {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        _ => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed",
        )
            .into_response(),
    }
}

type Labels = Vec<(&'static str, String)>;

/// One family of samples, written as a whole.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<(Labels, f64)>,
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

impl Family {
    fn new(name: &'static str, help: &'static str, kind: Kind) -> Self {
        Self {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: Labels, value: impl Into<f64>) {
        self.samples.push((labels, value.into()));
    }

    fn encode(self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.samples.is_empty() {
            return Ok(());
        }
        let kind = match self.kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
        };
        let mut family = encoder.encode_descriptor(self.name, self.help, None, kind)?;
        for (labels, value) in &self.samples {
            let sample = family.encode_family(labels)?;
            match self.kind {
                Kind::Counter => ConstCounter::new(*value).encode(sample)?,
                Kind::Gauge => ConstGauge::new(*value).encode(sample)?,
            }
        }
        Ok(())
    }
}

/// A histogram family: each sample's labels and snapshot.
fn encode_histograms(
    encoder: &mut DescriptorEncoder,
    (name, help): (&str, &str),
    samples: &[(Labels, Snapshot)],
) -> Result<(), std::fmt::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, (sum, count, buckets)) in samples {
        let mut sample = family.encode_family(labels)?;
        sample.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            *sum, *count, buckets, None,
        )?;
    }
    Ok(())
}

/// Histograms added bucket by bucket (a processor's tasks, summed).
fn merged(histograms: &[&Histogram]) -> Snapshot {
    let mut total = (0.0, 0, Vec::new());
    for histogram in histograms {
        let (sum, count, buckets) = histogram.snapshot();
        total.0 += sum;
        total.1 += count;
        if total.2.is_empty() {
            total.2 = buckets;
        } else {
            for (into, (_, add)) in total.2.iter_mut().zip(buckets) {
                into.1 += add;
            }
        }
    }
    total
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in process_families(self.started) {
            family.encode(&mut encoder)?;
        }
        self.encode_requests(&mut encoder)?;
        for family in self.log_families() {
            family.encode(&mut encoder)?;
        }
        for family in self.group_families() {
            family.encode(&mut encoder)?;
        }
        self.encode_processors(&mut encoder)
    }
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|_| key.to_string(), |api| format!("{api:?}"))
}

impl Sources {
    fn encode_requests(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut requests = Family::new(
            "sluice_kafka_requests",
            "Kafka requests handled, by API and version.",
            Kind::Counter,
        );
        for (key, version, count) in REQUESTS.counts() {
            requests.add(
                vec![("api", api_name(key)), ("version", version.to_string())],
                count as f64,
            );
        }
        let mut errors = Family::new(
            "sluice_kafka_request_errors",
            "Error codes answered (Produce, Fetch, OffsetCommit per partition; the group and transaction coordinators per request), by API and Kafka error code.",
            Kind::Counter,
        );
        for ((key, code), count) in REQUESTS.errors() {
            errors.add(
                vec![("api", api_name(key)), ("code", code.to_string())],
                count as f64,
            );
        }
        let config = &self.broker.config;
        let budget = config.queued_request_bytes_max.max(config.frame_bytes_max) as f64;
        let mut gauges = vec![
            Family::new(
                "sluice_kafka_connections",
                "Kafka connections open now.",
                Kind::Gauge,
            ),
            Family::new(
                "sluice_kafka_connections_accepted",
                "Kafka connections accepted.",
                Kind::Counter,
            ),
            Family::new(
                "sluice_kafka_queued_request_bytes",
                "Request bytes held in memory now.",
                Kind::Gauge,
            ),
            Family::new(
                "sluice_kafka_queued_request_bytes_max",
                "Their bound (kafka.queued_request_bytes_max).",
                Kind::Gauge,
            ),
        ];
        gauges[0].add(
            vec![],
            crate::metrics::CONNECTIONS_OPEN.load(Relaxed) as f64,
        );
        gauges[1].add(
            vec![],
            crate::metrics::CONNECTIONS_ACCEPTED.load(Relaxed) as f64,
        );
        gauges[2].add(
            vec![],
            budget - self.broker.request_bytes.available() as f64,
        );
        gauges[3].add(vec![], budget);
        requests.encode(encoder)?;
        errors.encode(encoder)?;
        for family in gauges {
            family.encode(encoder)?;
        }
        let latencies: Vec<(Labels, _)> = REQUESTS
            .latencies()
            .map(|(key, histogram)| (vec![("api", api_name(key))], histogram.snapshot()))
            .collect();
        encode_histograms(
            encoder,
            (
                "sluice_kafka_request_duration_seconds",
                "Time from a request read to its response ready (long polls included), by API.",
            ),
            &latencies,
        )?;
        encode_histograms(
            encoder,
            (
                "sluice_log_fsync_duration_seconds",
                "fdatasync of log segment files; the count is the number of fsyncs.",
            ),
            &[(vec![], FSYNC.snapshot())],
        )
    }

    fn log_families(&self) -> Vec<Family> {
        let mut topic = [
            Family::new(
                "sluice_topic_partitions",
                "Partitions of the topic.",
                Kind::Gauge,
            ),
            Family::new(
                "sluice_topic_size_bytes",
                "Bytes of the topic's log files.",
                Kind::Gauge,
            ),
            Family::new(
                "sluice_topic_segments",
                "Log segments of the topic, active ones included.",
                Kind::Gauge,
            ),
            Family::new(
                "sluice_topic_records_in",
                "Records written to the topic (by clients and processors).",
                Kind::Counter,
            ),
            Family::new(
                "sluice_topic_bytes_in",
                "Record batch bytes written to the topic (by clients and processors).",
                Kind::Counter,
            ),
            Family::new(
                "sluice_topic_records_out",
                "Records clients fetched from the topic.",
                Kind::Counter,
            ),
            Family::new(
                "sluice_topic_bytes_out",
                "Record batch bytes clients fetched from the topic.",
                Kind::Counter,
            ),
        ];
        let mut partition = [
            Family::new(
                "sluice_partition_high_watermark",
                "The partition's high watermark.",
                Kind::Gauge,
            ),
            Family::new(
                "sluice_partition_log_start_offset",
                "The partition's log start offset.",
                Kind::Gauge,
            ),
            Family::new(
                "sluice_partition_last_stable_offset",
                "The partition's last stable offset.",
                Kind::Gauge,
            ),
            Family::new(
                "sluice_partition_size_bytes",
                "Bytes of the partition's log files.",
                Kind::Gauge,
            ),
        ];
        for t in self.broker.store.topics() {
            let name = t.name().to_string();
            let partitions = t.partitions();
            let open: Vec<_> = partitions
                .iter()
                .filter_map(|slot| match slot {
                    crate::log::PartitionSlot::Open(p) => Some(p.clone()),
                    crate::log::PartitionSlot::Failed(_) => None,
                })
                .collect();
            let sum = |f: &dyn Fn(&crate::log::Partition) -> u64| {
                open.iter().map(|p| f(p)).sum::<u64>() as f64
            };
            let labels = vec![("topic", name.clone())];
            topic[0].add(labels.clone(), partitions.len() as f64);
            topic[1].add(labels.clone(), sum(&|p| p.size_bytes()));
            topic[2].add(labels.clone(), sum(&|p| p.segment_count() as u64));
            topic[3].add(
                labels.clone(),
                sum(&|p| Traffic::get(&p.traffic().records_in)),
            );
            topic[4].add(
                labels.clone(),
                sum(&|p| Traffic::get(&p.traffic().bytes_in)),
            );
            topic[5].add(
                labels.clone(),
                sum(&|p| Traffic::get(&p.traffic().records_out)),
            );
            topic[6].add(labels, sum(&|p| Traffic::get(&p.traffic().bytes_out)));
            if self.config.partition_series {
                for p in &open {
                    let labels = vec![("topic", name.clone()), ("partition", p.id().to_string())];
                    partition[0].add(labels.clone(), p.high_watermark() as f64);
                    partition[1].add(labels.clone(), p.log_start_offset() as f64);
                    partition[2].add(labels.clone(), p.last_stable_offset() as f64);
                    partition[3].add(labels, p.size_bytes() as f64);
                }
            }
        }
        topic.into_iter().chain(partition).collect()
    }

    fn group_families(&self) -> Vec<Family> {
        let mut families = [
            Family::new("sluice_group_members", "Members of the consumer group.", Kind::Gauge),
            Family::new("sluice_group_state", "1 for the group's state (Empty, PreparingRebalance, CompletingRebalance, Stable).", Kind::Gauge),
            Family::new("sluice_group_topic_lag", "Records of the topic the group has not committed: high watermark less committed offset, summed over partitions.", Kind::Gauge),
            Family::new("sluice_group_committed_offset", "The group's committed offset of the partition.", Kind::Gauge),
            Family::new("sluice_group_lag", "High watermark less the group's committed offset, per partition.", Kind::Gauge),
        ];
        let groups = &self.broker.groups;
        for listed in groups.list() {
            let group = listed.group_id.clone();
            let members = groups.describe(&group).map_or(0, |d| d.members.len());
            families[0].add(vec![("group", group.clone())], members as f64);
            families[1].add(
                vec![
                    ("group", group.clone()),
                    ("state", listed.state.name().to_string()),
                ],
                1.0,
            );
            let mut by_topic: BTreeMap<String, i64> = BTreeMap::new();
            for p in super::browse::group_lags(&self.broker, &group) {
                *by_topic.entry(p.topic.clone()).or_default() += p.lag;
                if self.config.partition_series {
                    let labels = vec![
                        ("group", group.clone()),
                        ("topic", p.topic),
                        ("partition", p.partition.to_string()),
                    ];
                    families[3].add(labels.clone(), p.committed as f64);
                    families[4].add(labels, p.lag as f64);
                }
            }
            for (topic, lag) in by_topic {
                families[2].add(vec![("group", group.clone()), ("topic", topic)], lag as f64);
            }
        }
        families.into_iter().collect()
    }

    fn encode_processors(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        type Read = fn(&crate::processor::status::PartitionStats) -> u64;
        let counters: [(&'static str, &'static str, Kind, Read); 12] = [
            (
                "sluice_processor_records_in",
                "Input records processed.",
                Kind::Counter,
                |s| s.records_in.load(Relaxed),
            ),
            (
                "sluice_processor_records_out",
                "Output records written.",
                Kind::Counter,
                |s| s.records_out.load(Relaxed),
            ),
            (
                "sluice_processor_errors",
                "Records that failed (a trap, an error, a limit).",
                Kind::Counter,
                |s| s.errors.load(Relaxed),
            ),
            (
                "sluice_processor_skipped",
                "Failed records skipped (on-error skip).",
                Kind::Counter,
                |s| s.skipped.load(Relaxed),
            ),
            (
                "sluice_processor_dead_lettered",
                "Failed records sent to the dead-letter topic.",
                Kind::Counter,
                |s| s.dead_lettered.load(Relaxed),
            ),
            (
                "sluice_processor_batches",
                "Batches processed (records_in / batches is the mean batch size).",
                Kind::Counter,
                |s| s.batches.load(Relaxed),
            ),
            (
                "sluice_processor_late_dropped",
                "Records dropped as late (stateful processors).",
                Kind::Counter,
                |s| s.late_dropped.load(Relaxed),
            ),
            (
                "sluice_processor_memory_bytes",
                "Peak linear memory of the plugin instances.",
                Kind::Gauge,
                |s| s.memory_bytes.load(Relaxed),
            ),
            (
                "sluice_processor_state_bytes",
                "Approximate bytes of keyed state (stateful processors).",
                Kind::Gauge,
                |s| s.state_bytes.load(Relaxed),
            ),
            (
                "sluice_processor_state_keys",
                "Entries in the stores of stateful processors (as of their last commits).",
                Kind::Gauge,
                |s| s.keys.load(Relaxed),
            ),
            (
                "sluice_processor_open_windows",
                "Windows open in the stores plugins opened as windowed (as of their last commits; 0 without one).",
                Kind::Gauge,
                |s| s.open_windows().unwrap_or(0),
            ),
            (
                "sluice_processor_restored_bytes",
                "Changelog bytes restored into lost state.",
                Kind::Counter,
                |s| s.restored_bytes.load(Relaxed),
            ),
        ];
        let stats = self.processors.partition_stats();
        let lags: BTreeMap<(String, String, i32), i64> = self
            .processors
            .list()
            .into_iter()
            .flat_map(|status| {
                let name = status.name;
                status
                    .partitions
                    .into_iter()
                    .map(move |p| ((name.clone(), p.topic, p.partition), p.lag))
            })
            .collect();
        let labels_of = |processor: &str, s: &crate::processor::status::PartitionStats| -> Labels {
            let mut labels = vec![("processor", processor.to_string())];
            if self.config.partition_series {
                labels.push(("topic", s.topic.clone()));
                labels.push(("partition", s.partition.to_string()));
            }
            labels
        };
        for (name, help, kind, read) in counters {
            let mut sums: BTreeMap<Labels, u64> = BTreeMap::new();
            for (processor, tasks) in &stats {
                for s in tasks {
                    *sums.entry(labels_of(processor, s)).or_default() += read(s);
                }
            }
            let mut family = Family::new(name, help, kind);
            for (labels, value) in sums {
                family.add(labels, value as f64);
            }
            family.encode(encoder)?;
        }
        let mut lag = Family::new(
            "sluice_processor_lag",
            "Input records not yet processed (committed).",
            Kind::Gauge,
        );
        let mut lag_sums: BTreeMap<Labels, i64> = BTreeMap::new();
        for (processor, tasks) in &stats {
            for s in tasks {
                let value = lags
                    .get(&(processor.clone(), s.topic.clone(), s.partition))
                    .copied()
                    .unwrap_or(0);
                *lag_sums.entry(labels_of(processor, s)).or_default() += value;
            }
        }
        for (labels, value) in lag_sums {
            lag.add(labels, value as f64);
        }
        lag.encode(encoder)?;
        let mut latency: BTreeMap<Labels, Vec<&Histogram>> = BTreeMap::new();
        for (processor, tasks) in &stats {
            for s in tasks {
                latency
                    .entry(labels_of(processor, s))
                    .or_default()
                    .push(&s.batch_latency);
            }
        }
        let latency: Vec<(Labels, _)> = latency
            .into_iter()
            .map(|(labels, h)| (labels, merged(&h)))
            .collect();
        encode_histograms(
            encoder,
            (
                "sluice_processor_batch_duration_seconds",
                "Time in the plugin's process calls per batch.",
            ),
            &latency,
        )
    }
}

/// The process: build, uptime, RSS, CPU and open files (Linux `/proc`).
fn process_families(started: Instant) -> Vec<Family> {
    let mut build = Family::new(
        "sluice_build_info",
        "The running build (always 1).",
        Kind::Gauge,
    );
    build.add(
        vec![("version", env!("CARGO_PKG_VERSION").to_string())],
        1.0,
    );
    let mut uptime = Family::new(
        "sluice_uptime_seconds",
        "Seconds since the broker started.",
        Kind::Gauge,
    );
    uptime.add(vec![], started.elapsed().as_secs_f64());
    let mut families = vec![build, uptime];
    let page_bytes = sysconf(libc::_SC_PAGESIZE).unwrap_or(4096.0);
    if let Some(pages) = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<f64>().ok())
    {
        let mut rss = Family::new(
            "process_resident_memory_bytes",
            "Resident memory of the process.",
            Kind::Gauge,
        );
        rss.add(vec![], pages * page_bytes);
        families.push(rss);
    }
    if let Some(ticks) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|text| {
            // Fields after the command name (which may hold spaces): utime is
            // the 14th field, stime the 15th.
            let rest = text.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?)
        })
    {
        let mut cpu = Family::new(
            "process_cpu_seconds",
            "CPU time of the process, user and system.",
            Kind::Counter,
        );
        cpu.add(vec![], ticks / sysconf(libc::_SC_CLK_TCK).unwrap_or(100.0));
        families.push(cpu);
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        let mut fds = Family::new("process_open_fds", "Open file descriptors.", Kind::Gauge);
        fds.add(vec![], entries.count() as f64);
        families.push(fds);
    }
    families
}

/// A system constant (page size, clock ticks per second).
#[allow(unsafe_code)]
fn sysconf(name: libc::c_int) -> Option<f64> {
    // SAFETY: sysconf reads a constant; it has no pointer arguments.
    let value = unsafe { libc::sysconf(name) };
    (value > 0).then_some(value as f64)
}
