//! The broker's topics and groups as JSON, for the web console (and
//! scripts): behind the admin API's access rules, like the rest of
//! `/v1`. Errors are `{"error": "…"}` with 400 (bad input), 404 (unknown
//! topic or group) or 409 (a group with members).
//!
//! | method and path | what |
//! |---|---|
//! | `GET /v1/overview` | version, uptime, connections, counts, disk bytes, and the totals written and fetched (a client plots their rate) |
//! | `GET /v1/topics` | every topic: partitions, records, bytes, retention, cleanup policy |
//! | `POST /v1/topics` | `{"name", "partitions", "configs": {…}}`: create |
//! | `GET /v1/topics/{name}` | configs (overrides) and per partition its offsets and size |
//! | `PATCH /v1/topics/{name}/configs` | `{"configs": {name: value or null}}`: set or reset overrides |
//! | `DELETE /v1/topics/{name}` | delete |
//! | `GET /v1/topics/{name}/messages?partition=P&offset=O&limit=N&contains=S` | up to N (≤ 500) committed records from O (or from the first at or after `from_ms=T`; default: the last N), key and value as text (JSON pretty-printed), headers; `contains` keeps records whose key or value holds S |
//! | `GET /v1/groups` | every group: state, members, lag |
//! | `GET /v1/groups/{name}` | members and their assignments, per partition committed offset, end and lag |
//! | `POST /v1/groups/{name}/reset` | `{"topic", "to": "earliest" or "latest" or an offset}`: move an empty group's offsets |

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::log::{Isolation, LogError, PartitionSlot, Topic};
use crate::server::BrokerContext;

/// Largest request body (a topic's configs).
const BODY_BYTES_MAX: usize = 64 * 1024;
/// Most records one messages request returns.
const MESSAGES_MAX: usize = 500;
/// Bytes read from the log for one messages request.
const MESSAGES_READ_BYTES_MAX: usize = 4 * 1024 * 1024;
/// A value shown up to this many bytes (the rest is cut, and said so).
const VALUE_SHOWN_BYTES_MAX: usize = 16 * 1024;

/// What the handlers read: the broker's shared state and its start.
pub(crate) struct Browse {
    pub(crate) broker: Arc<BrokerContext>,
    pub(crate) started: std::time::Instant,
}

type Shared = State<Arc<Browse>>;

pub(super) fn routes(browse: Arc<Browse>) -> Router {
    Router::new()
        .route("/v1/overview", get(overview))
        .route("/v1/topics", get(topics).post(create_topic))
        .route("/v1/topics/{name}", get(topic).delete(delete_topic))
        .route("/v1/topics/{name}/configs", patch(set_configs))
        .route("/v1/topics/{name}/messages", get(messages))
        .route("/v1/groups", get(groups))
        .route("/v1/groups/{name}", get(group))
        .route("/v1/groups/{name}/reset", post(reset_group))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(browse)
}

/// A refusal: its status and message, sent as `{"error": …}`.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// What a handler answers: JSON, or a refusal.
type Answer = Result<Json<Value>, Failure>;

fn error(status: StatusCode, message: impl Into<String>) -> Failure {
    Failure(status, message.into())
}

fn log_error(failure: LogError) -> Failure {
    let status = match failure {
        LogError::UnknownTopic(_) | LogError::UnknownPartition { .. } => StatusCode::NOT_FOUND,
        LogError::TopicExists(_) => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, failure.to_string())
}

/// Runs store work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// A processor's topics (changelog, repartition) are the broker's: not
/// created, reconfigured or deleted here either, as over Kafka.
fn refuse_processor_topic(name: &str) -> Result<(), Failure> {
    if crate::acl::is_processor_resource(name) {
        return Err(error(
            StatusCode::CONFLICT,
            format!("{name:?} belongs to a processor; remove the processor instead"),
        ));
    }
    Ok(())
}

fn open_partitions(topic: &Topic) -> Vec<Arc<crate::log::Partition>> {
    topic
        .partitions()
        .into_iter()
        .filter_map(|slot| match slot {
            PartitionSlot::Open(partition) => Some(partition),
            PartitionSlot::Failed(_) => None,
        })
        .collect()
}

async fn overview(State(browse): Shared) -> Answer {
    let store = browse.broker.store.clone();
    let started = browse.started;
    blocking(move || {
        use std::sync::atomic::Ordering::Relaxed;
        let topics = store.topics();
        let partitions: Vec<_> = topics.iter().flat_map(|t| open_partitions(t)).collect();
        let sum = |f: &dyn Fn(&crate::log::Partition) -> u64| {
            partitions.iter().map(|p| f(p)).sum::<u64>()
        };
        let traffic = |f: fn(&crate::metrics::Traffic) -> &std::sync::atomic::AtomicU64| {
            sum(&|p| f(p.traffic()).load(Relaxed))
        };
        Ok(Json(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_ms": started.elapsed().as_millis() as u64,
            "connections": crate::metrics::CONNECTIONS_OPEN.load(Relaxed),
            "topics": topics.len(),
            "partitions": partitions.len(),
            "disk_bytes": sum(&|p| p.size_bytes()),
            "records_in": traffic(|t| &t.records_in),
            "bytes_in": traffic(|t| &t.bytes_in),
            "records_out": traffic(|t| &t.records_out),
            "bytes_out": traffic(|t| &t.bytes_out),
        })))
    })
    .await
}

fn topic_summary(topic: &Topic) -> Value {
    let partitions = open_partitions(topic);
    let config = topic.config();
    json!({
        "name": topic.name(),
        "partitions": topic.partition_count(),
        "records": partitions.iter().map(|p| p.high_watermark() - p.log_start_offset()).sum::<i64>(),
        "size_bytes": partitions.iter().map(|p| p.size_bytes()).sum::<u64>(),
        "retention_ms": config.retention_ms,
        "cleanup_policy": topic.overrides().get("cleanup.policy").cloned().unwrap_or_else(|| "delete".into()),
    })
}

async fn topics(State(browse): Shared) -> Answer {
    let store = browse.broker.store.clone();
    blocking(move || {
        let topics: Vec<Value> = store.topics().iter().map(|t| topic_summary(t)).collect();
        Ok(Json(json!({ "topics": topics })))
    })
    .await
}

async fn topic(State(browse): Shared, Path(name): Path<String>) -> Answer {
    let topic = (browse.broker.store.topic(&name))
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no topic {name:?}")))?;
    blocking(move || {
        let partitions: Vec<Value> = topic
            .partitions()
            .iter()
            .enumerate()
            .map(|(index, slot)| match slot {
                PartitionSlot::Open(p) => json!({
                    "partition": index,
                    "log_start_offset": p.log_start_offset(),
                    "high_watermark": p.high_watermark(),
                    "last_stable_offset": p.last_stable_offset(),
                    "size_bytes": p.size_bytes(),
                    "segments": p.segment_count(),
                }),
                PartitionSlot::Failed(reason) => json!({ "partition": index, "error": reason }),
            })
            .collect();
        let mut summary = topic_summary(&topic);
        summary["configs"] = json!(topic.overrides());
        summary["partition_details"] = json!(partitions);
        Ok(Json(summary))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTopic {
    name: String,
    partitions: Option<i32>,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

async fn create_topic(
    State(browse): Shared,
    Json(body): Json<NewTopic>,
) -> Result<Response, Failure> {
    refuse_processor_topic(&body.name)?;
    let store = browse.broker.store.clone();
    let partitions = body
        .partitions
        .unwrap_or(browse.broker.config.num_partitions);
    let topic = blocking(move || {
        let topic =
            (store.create_topic(&body.name, partitions, body.configs)).map_err(log_error)?;
        Ok(topic_summary(&topic))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(topic)).into_response())
}

async fn delete_topic(State(browse): Shared, Path(name): Path<String>) -> Answer {
    refuse_processor_topic(&name)?;
    let store = browse.broker.store.clone();
    blocking(move || {
        store.delete_topic(&name, None).map_err(log_error)?;
        Ok(Json(json!({ "deleted": name })))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Configs {
    configs: BTreeMap<String, Option<String>>,
}

async fn set_configs(
    State(browse): Shared,
    Path(name): Path<String>,
    Json(body): Json<Configs>,
) -> Answer {
    refuse_processor_topic(&name)?;
    let store = browse.broker.store.clone();
    blocking(move || {
        let configs = store
            .update_topic_config(&name, |overrides| {
                for (key, value) in body.configs {
                    match value {
                        Some(value) => overrides.insert(key, value),
                        None => overrides.remove(&key),
                    };
                }
            })
            .map_err(log_error)?;
        Ok(Json(json!({ "configs": configs })))
    })
    .await
}

#[derive(Deserialize)]
struct MessagesQuery {
    partition: Option<i32>,
    offset: Option<i64>,
    /// The first record at or after this time (ms since the epoch), when
    /// no `offset` is given.
    from_ms: Option<i64>,
    limit: Option<usize>,
    contains: Option<String>,
}

async fn messages(
    State(browse): Shared,
    Path(name): Path<String>,
    Query(query): Query<MessagesQuery>,
) -> Answer {
    let store = browse.broker.store.clone();
    blocking(move || read_messages(&store, &name, query).map(Json)).await
}

/// Up to `limit` committed records of one partition from `offset` (default:
/// the last `limit`), filtered by `contains`, each shown as text.
fn read_messages(
    store: &crate::log::LogStore,
    name: &str,
    query: MessagesQuery,
) -> Result<Value, Failure> {
    let partition_id = query.partition.unwrap_or(0);
    let partition = store.partition(name, partition_id).map_err(log_error)?;
    let limit = query.limit.unwrap_or(50).clamp(1, MESSAGES_MAX);
    let start = partition.log_start_offset();
    let end = partition.last_stable_offset();
    let from = match (query.offset, query.from_ms) {
        (Some(offset), _) => offset,
        (None, Some(time_ms)) => (partition.offset_for_timestamp(time_ms))
            .map_err(log_error)?
            .map_or(end, |(offset, _)| offset),
        (None, None) => end - limit as i64,
    }
    .max(start);
    let mut records = Vec::new();
    let mut next = from;
    // Reads until `limit` records matched, the end, or the read bound.
    let mut budget = MESSAGES_READ_BYTES_MAX;
    while records.len() < limit && next < end && budget > 0 {
        let read = partition
            .read_isolated(next, budget.min(1 << 20), Isolation::ReadCommitted)
            .map_err(log_error)?;
        if read.records.is_empty() {
            break;
        }
        budget = budget.saturating_sub(read.records.len());
        let after = partition
            .committed_records(read, next, |record| {
                if records.len() < limit && matches(&record, query.contains.as_deref()) {
                    records.push(shown(record));
                }
            })
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if after <= next {
            break;
        }
        next = after;
    }
    Ok(json!({
        "topic": name,
        "partition": partition_id,
        "log_start_offset": start,
        "last_stable_offset": end,
        "from": from,
        "next_offset": next,
        "records": records,
    }))
}

fn matches(record: &crate::log::StoredRecord, contains: Option<&str>) -> bool {
    let Some(wanted) = contains.filter(|c| !c.is_empty()) else {
        return true;
    };
    let holds = |bytes: &Option<bytes::Bytes>| {
        bytes
            .as_ref()
            .is_some_and(|b| String::from_utf8_lossy(b).contains(wanted))
    };
    holds(&record.key) || holds(&record.value)
}

/// A record as the console shows it: text (JSON pretty-printed), cut at
/// [`VALUE_SHOWN_BYTES_MAX`].
fn shown(record: crate::log::StoredRecord) -> Value {
    let text = |bytes: Option<&bytes::Bytes>| -> Value {
        let Some(bytes) = bytes else {
            return Value::Null;
        };
        let cut = &bytes[..bytes.len().min(VALUE_SHOWN_BYTES_MAX)];
        let text = String::from_utf8_lossy(cut);
        match serde_json::from_slice::<Value>(cut) {
            Ok(parsed) if parsed.is_object() || parsed.is_array() => {
                json!(serde_json::to_string_pretty(&parsed).unwrap_or_else(|_| text.to_string()))
            }
            _ => json!(text),
        }
    };
    json!({
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": text(record.key.as_ref()),
        "value": text(record.value.as_ref()),
        "value_bytes": record.value.as_ref().map_or(0, |v| v.len()),
        "headers": record.headers.iter().map(|(k, v)| json!({
            "key": String::from_utf8_lossy(k),
            "value": v.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()),
        })).collect::<Vec<_>>(),
    })
}

/// Per partition of a group: committed offset, end (high watermark), lag.
fn group_offsets(broker: &BrokerContext, group: &str) -> Vec<Value> {
    group_lags(broker, group)
        .into_iter()
        .map(|p| {
            json!({
                "topic": p.topic, "partition": p.partition,
                "committed_offset": p.committed, "end_offset": p.end.unwrap_or(-1),
                "lag": p.lag,
            })
        })
        .collect()
}

/// A group's committed offset of one partition and how far behind the
/// partition's high watermark it is.
pub(super) struct PartitionLag {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) committed: i64,
    /// The high watermark; `None` for a partition that no longer exists.
    pub(super) end: Option<i64>,
    /// End less committed, at least 0 (0 without an end).
    pub(super) lag: i64,
}

/// Every partition `group` has committed an offset for, with its lag
/// (what the console and `/metrics` both show).
pub(super) fn group_lags(broker: &BrokerContext, group: &str) -> Vec<PartitionLag> {
    (broker.groups.committed(group).into_iter())
        .map(|((topic, partition), committed)| {
            let end = (broker.store.partition(&topic, partition).ok()).map(|p| p.high_watermark());
            let lag = end.map_or(0, |end| (end - committed.offset).max(0));
            PartitionLag {
                topic,
                partition,
                committed: committed.offset,
                end,
                lag,
            }
        })
        .collect()
}

async fn groups(State(browse): Shared) -> Answer {
    let broker = browse.broker.clone();
    blocking(move || {
        let groups: Vec<Value> = (broker.groups.list().into_iter())
            .map(|g| {
                let described = broker.groups.describe(&g.group_id);
                let members = described.map_or(0, |d| d.members.len());
                let lag: i64 = group_lags(&broker, &g.group_id).iter().map(|p| p.lag).sum();
                json!({
                    "group": g.group_id, "state": g.state.name(),
                    "protocol_type": g.protocol_type, "members": members, "lag": lag,
                })
            })
            .collect();
        Ok(Json(json!({ "groups": groups })))
    })
    .await
}

async fn group(State(browse): Shared, Path(name): Path<String>) -> Answer {
    let broker = browse.broker.clone();
    blocking(move || {
        let described = broker.groups.describe(&name);
        let offsets = group_offsets(&broker, &name);
        if described.is_none() && offsets.is_empty() {
            return Err(error(StatusCode::NOT_FOUND, format!("no group {name:?}")));
        }
        let member = |m: crate::group::MemberDescription| {
            let assignment = crate::client::consumer::decode_assignment(m.assignment);
            json!({
                "member_id": m.member_id, "client_id": m.client_id,
                "client_host": m.client_host, "assignment": assignment.unwrap_or_default(),
            })
        };
        let (state, members) = match described {
            Some(d) => (d.state.name(), d.members.into_iter().map(member).collect()),
            None => ("Empty", Vec::new()),
        };
        Ok(Json(json!({
            "group": name, "state": state, "members": members, "offsets": offsets,
        })))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reset {
    topic: String,
    to: String,
}

async fn reset_group(
    State(browse): Shared,
    Path(name): Path<String>,
    Json(body): Json<Reset>,
) -> Answer {
    if crate::acl::is_processor_resource(&name) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "a processor's offsets move with the processor: redeploy it with --from",
        ));
    }
    let broker = browse.broker.clone();
    blocking(move || {
        let topic = (broker.store.topic(&body.topic))
            .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no topic {:?}", body.topic)))?;
        let commits = open_partitions(&topic)
            .iter()
            .map(|p| {
                let offset = match body.to.as_str() {
                    "earliest" => p.log_start_offset(),
                    "latest" => p.last_stable_offset(),
                    other => other.parse::<i64>().map_err(|_| {
                        let text = format!("to {other:?} is not earliest, latest or an offset");
                        error(StatusCode::BAD_REQUEST, text)
                    })?,
                };
                Ok(crate::group::OffsetCommit {
                    topic: body.topic.clone(),
                    partition: p.id(),
                    offset: offset.clamp(p.log_start_offset(), p.high_watermark()),
                    leader_epoch: -1,
                    metadata: String::new(),
                })
            })
            .collect::<Result<Vec<_>, Failure>>()?;
        let results = broker.groups.commit(&name, -1, "", commits);
        if let Some(Err(failure)) = results.into_iter().find(Result::is_err) {
            return Err(error(StatusCode::CONFLICT, failure.to_string()));
        }
        let offsets = group_offsets(&broker, &name);
        Ok(Json(json!({ "group": name, "offsets": offsets })))
    })
    .await
}
