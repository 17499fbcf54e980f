//! One client must not be able to stall or exhaust the broker for everyone
//! else: stalled frame bodies, idle connections, unbounded Fetch responses,
//! group metadata held for a session, file descriptors and topic counts.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

use crate::harness::Broker;
use crate::kafka::KafkaClient;

/// How long a client not stuck behind a stalled one may take to be served:
/// well below `request_body_timeout_ms`, so an answer cannot come from the
/// stalled sockets being dropped.
const SERVED_WITHIN: Duration = Duration::from_secs(10);

/// ApiVersions then Metadata on a fresh connection, each answered within
/// [`SERVED_WITHIN`] (the read times out, and the test fails, otherwise).
fn probe(broker: &Broker) {
    let mut client = KafkaClient::connect(broker.kafka);
    client.set_response_timeout(SERVED_WITHIN);
    let versions = client.call(ApiVersionsRequest::default(), 3);
    assert_eq!(versions.error_code, 0);
    let metadata = client.call(MetadataRequest::default().with_topics(None), 12);
    assert_eq!(metadata.brokers.len(), 1);
}

/// Whether the broker still holds `stream` open (nothing to read, no EOF).
fn still_open(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let open =
        matches!(stream.read(&mut byte), Err(error) if error.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    open
}

#[test]
fn stalled_frame_bodies_do_not_stall_other_clients() {
    let dir = tempfile::tempdir().unwrap();
    // A body timeout far beyond the test, so the stalled sockets are still
    // waiting (not timed out) however slow the machine is.
    let broker =
        Broker::start_with_config(dir.path(), "[kafka]\nrequest_body_timeout_ms = 600000\n");
    // Six 100 MiB frames announced (600 MiB, above the 512 MiB request
    // budget) whose bodies never come.
    let mut stalled: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut stream = TcpStream::connect(broker.kafka).unwrap();
            stream.write_all(&(100_i32 << 20).to_be_bytes()).unwrap();
            stream
        })
        .collect();
    // Several rounds: the first may be read before the last stalled length.
    for _ in 0..5 {
        probe(&broker);
    }
    let kcat = Command::new("kcat")
        .args(["-b", &broker.kafka.to_string(), "-L", "-m", "10"])
        .output()
        .expect("kcat runs (install it with scripts/test)");
    let stdout = String::from_utf8_lossy(&kcat.stdout);
    assert!(
        kcat.status.success() && stdout.contains("1 brokers"),
        "kcat -L: {stdout} {}",
        String::from_utf8_lossy(&kcat.stderr)
    );
    for stream in &mut stalled {
        assert!(still_open(stream), "the stalled sockets are still open");
    }
}

#[test]
fn a_frame_body_that_never_arrives_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with_config(dir.path(), "[kafka]\nrequest_body_timeout_ms = 300\n");
    let mut stream = TcpStream::connect(broker.kafka).unwrap();
    stream
        .set_read_timeout(Some(crate::kafka::RESPONSE_TIMEOUT))
        .unwrap();
    stream.write_all(&1000_i32.to_be_bytes()).unwrap();
    stream.write_all(&[0u8; 10]).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(stream.read(&mut byte).unwrap(), 0, "the broker closed it");
    probe(&broker);
    // The reason is logged once the connection's task has ended, which
    // may be just after the socket closed: wait for the line.
    crate::clients::wait_for(
        "the log line naming kafka.request_body_timeout_ms",
        SERVED_WITHIN,
        || {
            broker
                .stderr_lines()
                .iter()
                .any(|line| line.contains("kafka.request_body_timeout_ms"))
        },
    );
}

#[test]
fn idle_connections_are_closed_but_not_while_a_request_waits() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with_config(dir.path(), "[kafka]\nconnections_max_idle_ms = 300\n");
    let mut idle = KafkaClient::connect(broker.kafka);
    assert_eq!(idle.call(ApiVersionsRequest::default(), 3).error_code, 0);
    assert!(idle.is_closed(), "an idle connection is closed");

    // A long poll that outlasts the idle timeout is still answered.
    let mut client = KafkaClient::connect(broker.kafka);
    let created = client.call(
        MetadataRequest::default()
            .with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(topic("idle-poll"))),
            ]))
            .with_allow_auto_topic_creation(true),
        12,
    );
    assert_eq!(created.topics[0].error_code, 0);
    let fetch = client.call(fetch_request("idle-poll", 1, 1500, 1 << 20, 1), 12);
    assert_eq!(fetch.error_code, 0);
    assert_eq!(fetch.responses[0].partitions[0].error_code, 0);
}

pub(crate) fn topic(name: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(kafka_protocol::protocol::StrBytes::from_string(
        name.to_string(),
    ))
}

/// A Fetch of partition 0 of `name` from offset 0, listed `times` times.
fn fetch_request(
    name: &str,
    min_bytes: i32,
    max_wait_ms: i32,
    max_bytes: i32,
    times: usize,
) -> kafka_protocol::messages::FetchRequest {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let partitions = (0..times)
        .map(|_| {
            FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(i32::MAX)
        })
        .collect();
    kafka_protocol::messages::FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic(name))
            .with_partitions(partitions)])
}

/// Creates `name` with `partitions` partitions.
fn create_topic(client: &mut KafkaClient, name: &str, partitions: i32) {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::CreateTopicsRequest;
    let response = client.call(
        CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1)]),
        4,
    );
    let created = &response.topics[0];
    assert_eq!(created.error_code, 0, "{:?}", created.error_message);
}

/// Appends `mebibytes` batches of about 1 MiB to `partition` of `name`.
fn produce_mebibytes(client: &mut KafkaClient, name: &str, partition: i32, mebibytes: usize) {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::ProduceRequest;
    for _ in 0..mebibytes {
        let records = sluice::log::batch::build::values(1000, 1000, 1_700_000_000_000).freeze();
        let response = client.call(
            ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic(name))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records))])]),
            9,
        );
        let answer = &response.responses[0].partition_responses[0];
        assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
    }
}

#[test]
fn fetch_responses_are_capped_and_duplicate_partitions_refused() {
    const MIB: usize = 1 << 20;
    const INVALID_REQUEST: i16 = 42;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let mut client = KafkaClient::connect(broker.kafka);
    create_topic(&mut client, "big", 4);
    for partition in 0..4 {
        produce_mebibytes(&mut client, "big", partition, 16);
    }
    // max_bytes = -1 ("unlimited"), partition 0 listed 64 times, then the
    // other three: ~1 GiB of response if nothing bounds it.
    let mut request = fetch_request("big", 1, 0, -1, 64);
    for partition in 1..4 {
        let mut extra = request.topics[0].partitions[0].clone();
        extra.partition = partition;
        request.topics[0].partitions.push(extra);
    }
    let response = client.call(request, 12);
    let partitions = &response.responses[0].partitions;
    assert_eq!(partitions.len(), 67, "one answer per listed partition");
    let bytes = |index: usize| partitions[index].records.as_ref().map_or(0, |r| r.len());
    assert_eq!(partitions[0].error_code, 0);
    assert!(bytes(0) >= 15 * MIB, "the first listing is served");
    for duplicate in &partitions[1..64] {
        assert_eq!(duplicate.error_code, INVALID_REQUEST);
        assert!(duplicate.records.as_ref().is_none_or(|r| r.is_empty()));
    }
    let total: usize = (0..partitions.len()).map(bytes).sum();
    // kafka.fetch_bytes_max (55 MiB), plus one batch of overshoot at most.
    assert!(total <= 56 * MIB, "{total} bytes in one response");
    assert!(total >= 50 * MIB, "{total} bytes: the cap, not less");
    let peak = broker.peak_rss_bytes();
    assert!(peak < 512 * MIB as u64, "broker peak RSS {peak} bytes");
}

/// CPU time (user + system) process `pid` has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks per second (`getconf CLK_TCK`).
fn ticks_per_second() -> u64 {
    let output = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap()
}

/// Waits (bounded) until the broker has logged a line containing `text`.
fn wait_for_log(broker: &Broker, seen: &mut Vec<String>, text: &str) -> bool {
    let deadline = std::time::Instant::now() + crate::harness::STARTUP_TIMEOUT;
    while std::time::Instant::now() < deadline {
        seen.extend(broker.stderr_lines());
        if seen.iter().any(|line| line.contains(text)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn running_out_of_file_descriptors_does_not_spin_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Soft and hard limit both 256, so raising the soft limit cannot help.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" \"$@\"")
        .arg(crate::harness::sluice_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data);
    let broker = Broker::spawn(command);
    let mut seen = Vec::new();

    // More connections than descriptors: accept fails with EMFILE.
    let clients: Vec<TcpStream> = (0..320)
        .map(|_| TcpStream::connect(broker.kafka).unwrap())
        .collect();
    assert!(
        wait_for_log(&broker, &mut seen, "Too many open files"),
        "accept reports running out of descriptors: {:?}",
        &seen[seen.len().saturating_sub(5)..]
    );
    // While saturated, the accept loop waits instead of spinning.
    let before = cpu_ticks(broker.pid());
    std::thread::sleep(Duration::from_secs(4));
    let used = cpu_ticks(broker.pid()) - before;
    assert!(
        used < ticks_per_second(),
        "the broker used {used} ticks of CPU in 4 s while out of descriptors"
    );
    let accept_failures = seen.iter().filter(|l| l.contains("accept failed")).count()
        + broker
            .stderr_lines()
            .iter()
            .filter(|l| l.contains("accept failed"))
            .count();
    assert!(
        accept_failures <= 2,
        "{accept_failures} accept failure lines: once per streak"
    );

    // Once clients leave, new ones are served.
    drop(clients);
    probe(&broker);
    // A topic needing more descriptors than remain: a clear error, and the
    // broker keeps serving.
    let mut client = KafkaClient::connect(broker.kafka);
    let (code, message) = try_create_topic(&mut client, "wide", 400);
    assert!(
        code == 0 || message.contains("Too many open files"),
        "{code} {message}"
    );
    if code != 0 {
        let half_created = std::fs::read_dir(data.join("topics"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .find(|name| name.to_string_lossy().starts_with("wide-"));
        assert!(
            half_created.is_none(),
            "half-created topic {half_created:?}"
        );
    }
    probe(&broker);
    assert!(
        seen.iter().any(|line| line.contains("open file limit")),
        "the start logs the open-file limit"
    );
}

/// CreateTopics of `name`: (error code, message).
fn try_create_topic(client: &mut KafkaClient, name: &str, partitions: i32) -> (i16, String) {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::CreateTopicsRequest;
    let response = client.call(
        CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1)]),
        4,
    );
    let created = &response.topics[0];
    let message = created.error_message.as_ref().map(|m| m.to_string());
    (created.error_code, message.unwrap_or_default())
}

#[test]
fn topics_and_partitions_beyond_the_broker_wide_limits_are_refused() {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::CreatePartitionsRequest;
    const POLICY_VIOLATION: i16 = 44;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with_config(
        dir.path(),
        "[log]\ntopics_max = 3\npartitions_total_max = 10\n",
    );
    let mut client = KafkaClient::connect(broker.kafka);
    assert_eq!(try_create_topic(&mut client, "a", 4).0, 0);
    assert_eq!(try_create_topic(&mut client, "b", 4).0, 0);
    let (code, message) = try_create_topic(&mut client, "c", 4);
    assert_eq!(code, POLICY_VIOLATION, "{message}");
    assert!(message.contains("log.partitions_total_max 10"), "{message}");

    let grown = client.call(
        CreatePartitionsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic("a"))
                .with_count(7)
                .with_assignments(None)]),
        2,
    );
    assert_eq!(grown.results[0].error_code, POLICY_VIOLATION);

    assert_eq!(try_create_topic(&mut client, "c", 1).0, 0);
    let (code, message) = try_create_topic(&mut client, "d", 1);
    assert_eq!(code, POLICY_VIOLATION, "{message}");
    assert!(message.contains("log.topics_max 3"), "{message}");

    let metadata = client.call(
        MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic("auto")))
            ]))
            .with_allow_auto_topic_creation(true),
        12,
    );
    assert_eq!(metadata.topics[0].error_code, POLICY_VIOLATION);
    // The log line may reach the stderr reader after the response: wait.
    let mut seen = Vec::new();
    assert!(
        wait_for_log(&broker, &mut seen, "topic not auto-created"),
        "{}",
        seen.join("\n")
    );
}

/// JoinGroup v3 of a new member to `group` with `metadata_bytes` of
/// subscription; returns the error code.
fn join_group(client: &mut KafkaClient, group: &str, metadata_bytes: usize) -> i16 {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{GroupId, JoinGroupRequest};
    use kafka_protocol::protocol::StrBytes;
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_session_timeout_ms(60_000)
        .with_rebalance_timeout_ms(60_000)
        .with_member_id(StrBytes::default())
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(bytes::Bytes::from(vec![7u8; metadata_bytes]))]);
    client.call(request, 3).error_code
}

#[test]
fn group_member_metadata_is_bounded() {
    const MIB: usize = 1 << 20;
    const MESSAGE_TOO_LARGE: i16 = 10;
    const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    const INVALID_GROUP_ID: i16 = 24;
    let dir = tempfile::tempdir().unwrap();
    // No initial delay: each lone member's join completes at once.
    let broker =
        Broker::start_with_config(dir.path(), "[groups]\ninitial_rebalance_delay_ms = 0\n");
    let mut client = KafkaClient::connect(broker.kafka);

    // 40 members with 8 MiB subscriptions each (320 MiB if kept).
    for index in 0..40 {
        let code = join_group(&mut client, &format!("huge-{index}"), 8 * MIB);
        assert_eq!(
            code, MESSAGE_TOO_LARGE,
            "join {index} with 8 MiB of metadata"
        );
    }
    // 80 members just under the per-member bound: the broker-wide budget
    // (64 MiB) admits some, refuses the rest.
    let codes: Vec<i16> = (0..80)
        .map(|index| join_group(&mut client, &format!("big-{index}"), 1000 * 1024))
        .collect();
    let admitted = codes.iter().filter(|code| **code == 0).count();
    let refused = codes
        .iter()
        .filter(|code| **code == COORDINATOR_NOT_AVAILABLE)
        .count();
    assert_eq!(admitted + refused, 80, "{codes:?}");
    assert!(
        admitted >= 40 && admitted * 1000 * 1024 <= 64 * MIB && refused > 0,
        "{admitted} admitted: {codes:?}"
    );

    let long_id = "g".repeat(256);
    assert_eq!(join_group(&mut client, &long_id, 10), INVALID_GROUP_ID);
    // Others still join.
    assert_eq!(join_group(&mut client, "small", 100), 0);

    let peak = broker.peak_rss_bytes();
    assert!(peak < 256 * MIB as u64, "broker peak RSS {peak} bytes");
}

#[test]
fn fetched_bytes_waiting_to_be_written_are_bounded_broker_wide() {
    use kafka_protocol::messages::{ApiKey, FetchResponse};
    const MIB: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with_config(
        dir.path(),
        "[kafka]\nqueued_fetch_bytes_max = 33554432\n", // 32 MiB
    );
    let mut client = KafkaClient::connect(broker.kafka);
    create_topic(&mut client, "pipelined", 1);
    produce_mebibytes(&mut client, "pipelined", 0, 16);
    // Eight 16 MiB fetches pipelined, none of their responses read yet:
    // only what the budget holds (plus what the socket took) is read.
    let request = fetch_request("pipelined", 1, 0, -1, 1);
    let ids: Vec<i32> = (0..8).map(|_| client.send(&request, 12)).collect();
    let sizes: Vec<usize> = ids
        .into_iter()
        .map(|id| {
            let response: FetchResponse = client.receive(ApiKey::Fetch, 12, id);
            let partition = &response.responses[0].partitions[0];
            assert_eq!(partition.error_code, 0);
            partition.records.as_ref().map_or(0, |r| r.len())
        })
        .collect();
    let empty = sizes.iter().filter(|size| **size == 0).count();
    assert!(empty > 0, "some fetches found the budget full: {sizes:?}");
    let served = sizes.iter().filter(|size| **size >= 15 * MIB).count();
    assert!(served > 0, "the budget serves some: {sizes:?}");
    // Later fetches are served again once earlier responses are written.
    let again = client.call(request, 12);
    let records = again.responses[0].partitions[0].records.as_ref();
    assert!(records.map_or(0, |r| r.len()) >= 15 * MIB);
}

/// A fetched-bytes budget configured below one batch is raised to at least
/// one whole response: the batch is served, not answered empty forever.
#[test]
fn a_batch_larger_than_the_configured_fetch_budget_is_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with_config(dir.path(), "[kafka]\nqueued_fetch_bytes_max = 1024\n");
    let mut client = KafkaClient::connect(broker.kafka);
    create_topic(&mut client, "big", 1);
    produce_mebibytes(&mut client, "big", 0, 1);
    let response = client.call(fetch_request("big", 1, 0, -1, 1), 12);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    let bytes = partition.records.as_ref().map_or(0, |r| r.len());
    assert!(bytes >= 1_000_000, "served {bytes} bytes of a 1 MB batch");
}
