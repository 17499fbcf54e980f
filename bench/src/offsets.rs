//! `sluice-bench offsets`: how a commit's latency, and the latency of an
//! unrelated request (Metadata without topics; the client's
//! `Connection` negotiates ApiVersions itself and does not send it again) sent while commits run, depend on how
//! many offsets the broker already holds: 1 000 against 500 000 (by
//! default). A commit should cost what it changes, so the medians should
//! match.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, GroupId, MetadataRequest, OffsetCommitRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice::client::Connection;

use crate::median;
use crate::serve::{sluice_binary, Serve};

/// Partitions of the benchmark topic; each loading commit covers them all.
const PARTITIONS: i32 = 1000;

#[derive(Debug, Args)]
pub(crate) struct OffsetsBenchArgs {
    /// The `sluice` binary (default: next to this one, then PATH).
    #[arg(long)]
    sluice: Option<PathBuf>,
    /// Directory for the broker's data (default: the current one).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Committed offsets to measure at, comma separated (multiples of 1000).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000u64, 500_000])]
    at: Vec<u64>,
    /// Commits (and ApiVersions calls) timed at each size.
    #[arg(long, default_value_t = 200)]
    samples: usize,
}

fn topic() -> TopicName {
    TopicName(StrBytes::from_static_str("offsets-bench"))
}

fn commit(group: &str, partitions: std::ops::Range<i32>, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic())
            .with_partitions(
                partitions
                    .map(|p| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(offset)
                    })
                    .collect(),
            )])
}

async fn call_commit(
    connection: &mut Connection,
    request: OffsetCommitRequest,
) -> anyhow::Result<()> {
    let response = connection.call(request).await?;
    let failed = response
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .find(|p| p.error_code != 0);
    if let Some(partition) = failed {
        bail!("commit refused: error {}", partition.error_code);
    }
    Ok(())
}

/// Median milliseconds of a one-partition commit, and of Metadata on
/// another connection while those commits run.
async fn measure(kafka: &str, samples: usize) -> anyhow::Result<(f64, f64)> {
    let mut committer = Connection::open(kafka).await?;
    let mut prober = Connection::open(kafka).await?;
    let probing = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(samples);
        for _ in 0..samples {
            let started = Instant::now();
            prober
                .call(MetadataRequest::default().with_topics(Some(Vec::new())))
                .await?;
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        anyhow::Ok(latencies)
    });
    let mut commits = Vec::with_capacity(samples);
    for sample in 0..samples {
        let started = Instant::now();
        call_commit(&mut committer, commit("probe", 0..1, sample as i64)).await?;
        commits.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let mut api_versions = probing.await??;
    Ok((median(&mut commits), median(&mut api_versions)))
}

async fn run_async(kafka: &str, args: &OffsetsBenchArgs) -> anyhow::Result<Vec<(u64, f64, f64)>> {
    let mut connection = Connection::open(kafka).await?;
    let created = connection
        .call(
            CreateTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic())
                    .with_num_partitions(PARTITIONS)
                    .with_replication_factor(1)]),
        )
        .await?;
    if created.topics[0].error_code != 0 {
        bail!("creating the topic: error {}", created.topics[0].error_code);
    }
    let mut loaded = 0u64;
    let mut figures = Vec::new();
    for &target in &args.at {
        while loaded < target {
            let group = format!("load-{}", loaded / PARTITIONS as u64);
            call_commit(&mut connection, commit(&group, 0..PARTITIONS, 1)).await?;
            loaded += PARTITIONS as u64;
        }
        eprintln!("sluice-bench offsets: {loaded} committed offsets, measuring…");
        let (commit_ms, api_versions_ms) = measure(kafka, args.samples).await?;
        figures.push((loaded, commit_ms, api_versions_ms));
    }
    Ok(figures)
}

pub(crate) fn run(args: &OffsetsBenchArgs) -> anyhow::Result<()> {
    let binary = sluice_binary(args.sluice.as_deref())?;
    let temporary = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir_in("."),
    }
    .context("creating the benchmark directory")?;
    let serve = Serve::start(&binary, temporary.path(), &[])?;
    let runtime = tokio::runtime::Runtime::new()?;
    let figures = serve.explained(runtime.block_on(run_async(&serve.kafka, args)))?;
    let mut out = String::from(
        "committed offsets | commit median ms | Metadata (no topics) median ms (during commits)\n",
    );
    for (offsets, commit_ms, api_versions_ms) in figures {
        out += &format!("{offsets:>17} | {commit_ms:>16.2} | {api_versions_ms:>10.3}\n");
    }
    crate::emit(&out)
}
