//! Memory stays bounded by `state.memory_bytes_max` whatever the state's
//! size: many partitions, far more state than the cache.

use super::{produce_at, wait_settled, Input};
use crate::processors::Pipeline;

const START_MS: i64 = 1_767_225_600_000;
const STATE_MEMORY_BYTES: u64 = 16 << 20;
const PARTITIONS: i32 = 12;
/// What the process may grow beyond `STATE_MEMORY_BYTES` (see the test).
const OUTSIDE_THE_BOUND_BYTES: u64 = 24 << 20;

/// A 48-character key that does not compress (with `state.compression`
/// on, repetitive keys would make the state small on disk).
fn random_key(partition: i32, i: usize) -> String {
    // Never zero (xorshift's fixed point), and one key per (partition, i).
    let mut x = ((partition as u64) << 40 | i as u64) << 1 | 1;
    (0..3)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{x:016x}")
        })
        .collect()
}

#[test]
fn resident_memory_stays_within_the_state_bound_with_state_far_larger_than_it() {
    let pipeline = Pipeline::start_with_config(&format!(
        "[state]\nmemory_bytes_max = {STATE_MEMORY_BYTES}\n"
    ));
    pipeline.create_topic("views", PARTITIONS);
    pipeline.create_topic("counts", PARTITIONS);
    pipeline.deploy(
        "counter",
        "windowed-count",
        &[
            "--input",
            "views",
            "--output",
            "counts",
            "--store",
            "counts",
            // One window for the whole run: every key stays in state.
            "--config",
            "size_ms=86400000",
            "--config",
            "emit=final",
            // Batches of 64 KiB: each partition's input batch (and its
            // decoded records) is held beside the state, bounded by
            // `--batch-bytes` per partition, not by the state setting. At
            // the default 1 MiB, 12 partitions with a backlog hold 20 to
            // 40 MiB of them; this test measures the state's memory.
            "--batch-bytes",
            "65536",
        ],
    );
    let produce = |from: usize, to: usize| {
        for partition in 0..PARTITIONS {
            let records: Vec<Input> = (from..to)
                .map(|i| (random_key(partition, i), START_MS + i as i64))
                .collect();
            produce_at(&pipeline, "views", partition, &records);
        }
    };
    // Warm up: every instance created, RocksDB open, a first commit each.
    produce(0, 2_000);
    wait_settled(&pipeline, "counter", 2_000 * PARTITIONS as i64);
    let base = pipeline.broker.rss_bytes();
    let show = |when: &str| {
        let b = &pipeline.broker;
        eprintln!(
            "{when}: anon {} MiB, file {} MiB, shmem {} MiB",
            b.status_bytes("RssAnon:") >> 20,
            b.status_bytes("RssFile:") >> 20,
            b.status_bytes("RssShmem:") >> 20
        );
    };
    show("base");
    // About 60 MB of keys and counts (720k keys), four times the state
    // memory.
    let total = 60_000;
    let half = total / 2;
    for step in 1..(half / 2_000) {
        produce(step * 2_000, (step + 1) * 2_000);
    }
    wait_settled(&pipeline, "counter", (half * PARTITIONS as usize) as i64);
    let mid_peak = pipeline.broker.peak_rss_bytes();
    let (_, list) = super::get_json(&pipeline, "/v1/processors");
    let mid_instances: u64 = list["processors"][0]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["memory_bytes"].as_u64().unwrap_or(0))
        .sum();
    eprintln!(
        "mid peak {} MiB, instances {} MiB, state {}",
        mid_peak >> 20,
        mid_instances >> 20,
        list["state"]
    );
    for step in (half / 2_000)..(total / 2_000) {
        produce(step * 2_000, (step + 1) * 2_000);
    }
    let status = wait_settled(&pipeline, "counter", (total * PARTITIONS as usize) as i64);
    let state_bytes: u64 = status["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["stateful"]["state_bytes"].as_u64().unwrap_or(0))
        .sum();
    let instances: u64 = status["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["memory_bytes"].as_u64().unwrap_or(0))
        .sum();
    let (_, list) = super::get_json(&pipeline, "/v1/processors");
    eprintln!(
        "instances {} MiB, state memory {}",
        instances >> 20,
        list["state"]
    );
    drop(list);
    show("end");
    let peak = pipeline.broker.peak_rss_bytes();
    let grown = peak.saturating_sub(base);
    eprintln!(
        "base {} MiB, peak {} MiB, grown {} MiB, state on disk {} MiB",
        base >> 20,
        peak >> 20,
        grown >> 20,
        state_bytes >> 20
    );
    // What the setting bounds: RocksDB's cache with the memtables charged
    // to it, the tasks' value caches, and their staged writes (a quarter
    // of it, taken out of the block cache).
    let (_, list) = super::get_json(&pipeline, "/v1/processors");
    let memory = list["state"]["memory_bytes"].as_u64().unwrap();
    assert!(memory <= STATE_MEMORY_BYTES * 3 / 4, "{list:#}");
    let staged = list["state"]["staged_bytes"].as_u64().unwrap();
    assert!(staged <= STATE_MEMORY_BYTES / 4, "{list:#}");
    // The process as a whole. Measured alone: 15 to 18 MiB of growth
    // (once 29) over a 16 MiB bound, for 12 instances and what were 360k
    // keys (a helper made one key of `i` and `i | 1`). With 720k keys, 100
    // MiB on disk uncompressed, and 64 KiB batches: 22 MiB (at the default
    // 1 MiB batches 42 to 59, the batches' share; see `--batch-bytes`
    // above). Before the allocator's arenas were capped and trimmed
    // (`memory.rs`) and the staged writes' share was taken out of the
    // block cache, it was 27 to 44 MiB. The allowance beyond the bound is
    // RocksDB's memory outside its cache (flush and compaction buffers,
    // table readers) and the allocator's slack.
    assert!(
        grown <= STATE_MEMORY_BYTES + OUTSIDE_THE_BOUND_BYTES,
        "resident memory grew by {} MiB (state bound {} MiB, state {} MiB)",
        grown >> 20,
        STATE_MEMORY_BYTES >> 20,
        state_bytes >> 20
    );
}

/// `state.staged_bytes_max` bounds what one call stages, not what a task
/// holds: a batch that stages more than it is narrowed, and a task whose
/// uncommitted changes reach `commit_bytes_max + staged_bytes_max` commits
/// and goes on, so every record is counted and none fails. (Before, the
/// bound was the task's total: the batch's records failed one by one once
/// the narrowed calls had filled it, and the processor stopped.)
#[test]
fn a_batch_staging_more_than_the_call_bound_commits_early_instead_of_failing() {
    let pipeline = Pipeline::start_with_config(
        "[state]\nkey_bytes_max = 1024\nvalue_bytes_max = 4096\n\
         staged_bytes_max = 16384\ncommit_bytes_max = 16384\n",
    );
    pipeline.create_topic("clicks", 1);
    pipeline.create_topic("counts", 1);
    // Every record a new key of 100 bytes: a window entry each, about 200
    // bytes staged per record, 200 KB per batch of 1 024.
    let keys = 5_000;
    let key = |i: usize| format!("user-{i:05}-{}", "x".repeat(89));
    let records: Vec<Input> = (0..keys).map(|i| (key(i), START_MS + i as i64)).collect();
    produce_at(&pipeline, "clicks", 0, &records);
    super::deploy_window_count(&pipeline, "counter", ("clicks", "counts"), 86_400_000, &[]);
    wait_settled(&pipeline, "counter", keys as i64);
    // Idle once the step after its last commit finds nothing to do (not
    // failed, nor still working).
    let status = pipeline.wait_for_within(
        "counter",
        "the task idle",
        std::time::Duration::from_secs(30),
        |s| s["partitions"][0]["state"] == "idle",
    );
    let partition = &status["partitions"][0];
    assert_eq!(partition["errors"], 0, "{status:#}");
    assert_eq!(partition["records_in"], keys, "{status:#}");
    // One open window per key, all committed, and its start's timer.
    assert_eq!(partition["stateful"]["keys"], keys, "{status:#}");
    assert_eq!(partition["stateful"]["timers_pending"], 1, "{status:#}");
    let commits = partition["stateful"]["commits"].as_u64().unwrap();
    // About 1 MB staged in all, committed at most 32 KiB at a time.
    assert!(commits >= 30, "{commits} commits: {status:#}");
    let path = format!(
        "/v1/processors/counter/stores/counts/windows/{}",
        key(4_999)
    );
    let (code, value) = super::get_json(&pipeline, &path);
    assert_eq!(code, 200, "{value:#}");
    assert_eq!(value["windows"][0]["value"], 1, "{value:#}");
}

/// The column family options RocksDB recorded in the state folder's
/// newest `OPTIONS-*` file (what the broker opened it with).
fn recorded_options(data: &std::path::Path) -> String {
    let state = data.join("state");
    let newest = std::fs::read_dir(&state)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("OPTIONS-") && !n.ends_with(".dbtmp"))
        })
        .max_by_key(|path| {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            name["OPTIONS-".len()..].parse::<u64>().unwrap_or(0)
        })
        .expect("an OPTIONS file");
    std::fs::read_to_string(newest).unwrap()
}

/// The options section of processor `name`'s column family.
fn family_section(options: &str, name: &str) -> String {
    let header = format!("[CFOptions \"processor/{name}\"]");
    let start = options
        .find(&header)
        .unwrap_or_else(|| panic!("{header} in {options}"));
    let rest = &options[start + header.len()..];
    let end = rest.find("\n[").unwrap_or(rest.len());
    rest[..end].to_string()
}

/// `state.compression`, `state.mmap_reads` and `state.write_buffer_bytes`
/// reach RocksDB; state files
/// written with one compression stay readable after switching to
/// another, and an unknown compression (or block cache fill, or a
/// memtable under 1 MiB) is refused at startup by name. A task runs with `state.block_cache_fill = "never"`
/// as with the default.
#[test]
fn state_compression_and_mmap_reads_are_settings_and_files_survive_a_switch() {
    let mut pipeline = Pipeline::start_with_config(
        "[state]\nmemory_bytes_max = 8388608\ncompression = \"zstd\"\nmmap_reads = true\n\
         block_cache_fill = \"never\"\n",
    );
    pipeline.create_topic("clicks", 1);
    pipeline.create_topic("counts", 1);
    super::deploy_window_count(&pipeline, "counter", ("clicks", "counts"), 86_400_000, &[]);
    // Every record a new key: enough to flush 1 MiB memtables to files.
    let keys = 40_000;
    let key = |i: usize| random_key(0, i);
    let records: Vec<Input> = (0..keys).map(|i| (key(i), START_MS + i as i64)).collect();
    produce_at(&pipeline, "clicks", 0, &records[..keys / 2]);
    wait_settled(&pipeline, "counter", (keys / 2) as i64);
    let data = pipeline.data_dir();
    let options = recorded_options(&data);
    assert!(options.contains("allow_mmap_reads=true"), "{options}");
    let family = family_section(&options, "counter");
    assert!(family.contains("compression=kZSTD"), "{family}");
    // An eighth of the state memory by default.
    assert!(family.contains("write_buffer_size=1048576"), "{family}");
    let tables = |data: &std::path::Path| {
        std::fs::read_dir(data.join("state"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "sst")
            })
            .count()
    };
    // Flushes run in the background: wait for the first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while tables(&data) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no table file written"
        );
        super::pause(50);
    }

    // Switched to no compression: the zstd files are read as before.
    pipeline.restart_after(|data| {
        let config = data.parent().unwrap().join("sluice.toml");
        std::fs::write(
            config,
            "[state]\nmemory_bytes_max = 8388608\nwrite_buffer_bytes = 3145728\n",
        )
        .unwrap();
    });
    let options = recorded_options(&data);
    assert!(options.contains("allow_mmap_reads=false"), "{options}");
    let family = family_section(&options, "counter");
    assert!(family.contains("compression=kNoCompression"), "{family}");
    assert!(family.contains("write_buffer_size=3145728"), "{family}");
    produce_at(&pipeline, "clicks", 0, &records[keys / 2..]);
    let status = wait_settled(&pipeline, "counter", keys as i64);
    let partition = &status["partitions"][0];
    assert_eq!(partition["errors"], 0, "{status:#}");
    assert_eq!(partition["stateful"]["keys"], keys, "{status:#}");
    for i in [0, keys / 2 - 1, keys - 1] {
        let path = format!("/v1/processors/counter/stores/counts/windows/{}", key(i));
        let (code, value) = super::get_json(&pipeline, &path);
        assert_eq!(code, 200, "{value:#}");
        assert_eq!(value["windows"][0]["value"], 1, "{value:#}");
    }

    // An unknown compression or fill: the broker does not start, and says
    // why.
    let status = pipeline
        .broker
        .stop_with("TERM", std::time::Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    let refused = |config: &str| {
        std::fs::write(data.parent().unwrap().join("sluice.toml"), config).unwrap();
        let output = std::process::Command::new(crate::harness::sluice_binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(data.parent().unwrap().join("sluice.toml"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!output.status.success(), "{stderr}");
        stderr
    };
    let stderr = refused("[state]\ncompression = \"snappy\"\n");
    assert!(
        stderr.contains("snappy") && stderr.contains("lz4") && stderr.contains("zstd"),
        "{stderr}"
    );
    let stderr = refused("[state]\nblock_cache_fill = \"sometimes\"\n");
    assert!(
        stderr.contains("sometimes") && stderr.contains("auto") && stderr.contains("never"),
        "{stderr}"
    );
    let stderr = refused("[state]\nwrite_buffer_bytes = 1024\n");
    assert!(
        stderr.contains("write_buffer_bytes") && stderr.contains("1 MiB"),
        "{stderr}"
    );
}
