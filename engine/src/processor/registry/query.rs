//! Interactive queries of a processor's committed state: a key, a range or
//! prefix scan with a cursor, a key's windows in a time range. Answers are
//! read from RocksDB, which holds only commits (staged writes live in each
//! task), and carry each partition's committed input position, so a
//! caller knows how far into the input the answer reflects.
//!
//! A key is looked up in every partition's state (the plugin may keep
//! state under keys other than the input's key); `partition` narrows it.
//!
//! Each partition is read from one RocksDB snapshot, so an answer and the
//! position it reports are of the same commit. A partition whose state is
//! being restored from its changelog does not answer (its entries are
//! incomplete and of no commit): 503, retry. Nor, unless the caller asks
//! for `stale` answers, does one rebuilding lost state by processing its
//! input again: its commits are whole, but of an input position behind
//! what it answered before the loss.

use serde::Serialize;
use serde_json::Value;

use super::{hex, internal, not_found, AdminError, Processors};
use crate::processor::stateful::TaskMeta;
use crate::state::{Committed, ProcessorState, StateError};

/// A task whose state a query reads.
#[derive(Debug, Clone)]
struct Task {
    /// Its inputs (several for a processor with co-partitioned inputs).
    topics: Vec<String>,
    partition: i32,
    task: u32,
    /// The processor was resumed without its state: a task with no commit
    /// record has not begun to rebuild or restore it yet.
    lost: bool,
}

/// Entries one scan answers at most, whatever `limit` asks.
pub(crate) const QUERY_ENTRIES_MAX: usize = 1_000;

/// A value as JSON: itself when it is JSON (counters, the SDK's typed
/// values), else UTF-8 text, else hex.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Rendered {
    pub(crate) encoding: &'static str,
    pub(crate) value: Value,
}

pub(crate) fn render(bytes: &[u8]) -> Rendered {
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        return Rendered {
            encoding: "json",
            value,
        };
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Rendered {
            encoding: "utf8",
            value: Value::String(text.to_string()),
        },
        Err(_) => Rendered {
            encoding: "hex",
            value: Value::String(hex(bytes)),
        },
    }
}

/// One partition's committed position.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Position {
    /// The (first) input topic.
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// The next input offset the answer has not seen.
    pub(crate) offset: i64,
    pub(crate) stream_time: Option<i64>,
    /// A processor with several inputs: the position in each (the same
    /// partition of every input).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) inputs: Vec<InputPosition>,
}

/// The committed position in one input of a task.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct InputPosition {
    pub(crate) topic: String,
    pub(crate) offset: i64,
}

/// A key's answer.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KeyAnswer {
    pub(crate) key: String,
    pub(crate) partition: i32,
    #[serde(flatten)]
    pub(crate) value: Rendered,
    pub(crate) position: Position,
}

/// An entry of a scan.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) partition: i32,
    #[serde(flatten)]
    pub(crate) value: Rendered,
}

/// A page of a scan.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScanAnswer {
    pub(crate) entries: Vec<Entry>,
    /// Pass as `cursor` for the next page; absent at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cursor: Option<String>,
    pub(crate) positions: Vec<Position>,
}

/// One window of a key.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Window {
    pub(crate) start: i64,
    pub(crate) end: i64,
    #[serde(flatten)]
    pub(crate) value: Rendered,
}

/// A key's windows.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WindowsAnswer {
    pub(crate) key: String,
    pub(crate) partition: Option<i32>,
    pub(crate) windows: Vec<Window>,
    pub(crate) positions: Vec<Position>,
}

/// What a scan asks.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScanRequest {
    pub(crate) prefix: Option<Vec<u8>>,
    pub(crate) from: Option<Vec<u8>>,
    pub(crate) to: Option<Vec<u8>>,
    pub(crate) limit: usize,
    pub(crate) cursor: Option<String>,
    pub(crate) among: Among,
}

/// Which partitions a query reads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Among {
    /// Only this one.
    pub(crate) partition: Option<i32>,
    /// Also those rebuilding lost state.
    pub(crate) stale: bool,
}

/// A partition's committed state, readable, and the position it is at.
struct Readable<'a> {
    view: Committed<'a>,
    position: Position,
}

fn storage(error: StateError) -> AdminError {
    internal(format!("reading state failed: {error}"))
}

/// `key` as shown: UTF-8 when it is, else hex.
fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) => text.to_string(),
        Err(_) => hex(key),
    }
}

impl Processors {
    /// The state and input partitions of processor `name`'s `store`.
    /// The state of processor `name`'s `store` and the partitions holding
    /// it: the input's, then the repartition topic's.
    fn queried(&self, name: &str, store: &str) -> Result<(ProcessorState, Vec<Task>), AdminError> {
        let running = self.get(name)?;
        let lost = running.state_lost;
        let deployment = &running.deployment;
        if !deployment.stores.iter().any(|s| s == store) {
            return Err(AdminError::NotFound(format!(
                "processor {name} has no store {store:?} (its stores: {})",
                if deployment.stores.is_empty() {
                    "none".to_string()
                } else {
                    deployment.stores.join(", ")
                }
            )));
        }
        let state = match self.state.existing(name) {
            Some(state) => state,
            None if lost => {
                return Err(AdminError::Unavailable(format!(
                    "processor {name} lost its state and has not begun to rebuild it yet"
                )))
            }
            None => return Err(not_found(name)),
        };
        let mut tasks = Vec::new();
        let repartition = deployment.repartition_topic();
        for topics in [deployment.inputs.clone(), vec![repartition]] {
            let count = topics
                .iter()
                .map(|topic| self.store.topic(topic).map_or(0, |t| t.partition_count()))
                .min()
                .unwrap_or(0);
            for partition in 0..count {
                tasks.push(Task {
                    task: deployment.task_id(&topics[0], partition),
                    topics: topics.clone(),
                    partition,
                    lost,
                });
            }
        }
        Ok((state, tasks))
    }

    /// `at`'s committed state if it answers queries now, else why not.
    fn readable<'a>(
        name: &str,
        state: &'a ProcessorState,
        at: &Task,
        stale: bool,
    ) -> Result<Result<Readable<'a>, String>, AdminError> {
        let view = state.committed(at.task);
        if view.restoring().map_err(storage)? {
            return Ok(Err(format!(
                "partition {} of processor {name} is restoring its state from its changelog \
                 and answers once that is done (`sluice processor status {name}` shows the \
                 progress)",
                at.partition
            )));
        }
        let meta = view.meta().map_err(storage)?;
        if meta.is_none() && at.lost {
            return Ok(Err(format!(
                "partition {} of processor {name} lost its state and has not begun to \
                 rebuild it yet",
                at.partition
            )));
        }
        let meta = meta.and_then(|bytes| TaskMeta::decode(&bytes).ok());
        let rebuilding = meta.as_ref().and_then(|m| {
            m.inputs.iter().find_map(|input| {
                let until = input
                    .rebuild_until
                    .filter(|until| input.position < *until)?;
                Some((input, until))
            })
        });
        if let (Some((input, until)), false) = (rebuilding, stale) {
            let topic = match input.topic.as_str() {
                "" => at.topics[0].as_str(),
                topic => topic,
            };
            return Ok(Err(format!(
                "partition {} of processor {name} is rebuilding lost state by processing \
                 {topic} again, at offset {} of {until}; ask with stale=true for its state \
                 as of that offset",
                at.partition, input.position
            )));
        }
        let position = Self::position(meta, at);
        Ok(Ok(Readable { view, position }))
    }

    /// 503 for the partitions in `unavailable` (why each cannot answer).
    fn unavailable(unavailable: Vec<String>) -> AdminError {
        AdminError::Unavailable(unavailable.join("; "))
    }

    fn position(meta: Option<TaskMeta>, at: &Task) -> Position {
        let offset = |index: usize| {
            meta.as_ref()
                .and_then(|m| m.input(&at.topics[index], index == 0))
                .map_or(0, |input| input.position)
        };
        let inputs = if at.topics.len() > 1 {
            (0..at.topics.len())
                .map(|index| InputPosition {
                    topic: at.topics[index].clone(),
                    offset: offset(index),
                })
                .collect()
        } else {
            Vec::new()
        };
        Position {
            topic: at.topics[0].clone(),
            partition: at.partition,
            offset: offset(0),
            stream_time: meta.and_then(|m| m.stream_time),
            inputs,
        }
    }

    /// The committed value of `key` in `store`.
    pub(crate) fn query_key(
        &self,
        name: &str,
        store: &str,
        key: &[u8],
        among: Among,
    ) -> Result<KeyAnswer, AdminError> {
        let (state, tasks) = self.queried(name, store)?;
        let mut unavailable = Vec::new();
        for at in tasks {
            if among.partition.is_some_and(|p| p != at.partition) {
                continue;
            }
            let readable = match Self::readable(name, &state, &at, among.stale)? {
                Ok(readable) => readable,
                Err(why) => {
                    unavailable.push(why);
                    continue;
                }
            };
            if let Some(value) = readable.view.get(store, key).map_err(storage)? {
                return Ok(KeyAnswer {
                    key: show_key(key),
                    partition: at.partition,
                    value: render(&value),
                    position: readable.position,
                });
            }
        }
        // Not found where it could be looked for: it may be where it could not.
        if !unavailable.is_empty() {
            return Err(Self::unavailable(unavailable));
        }
        Err(AdminError::NotFound(format!(
            "key {:?} is not in store {store} of processor {name}",
            show_key(key)
        )))
    }

    /// A page of `store`'s committed entries, partition after partition.
    pub(crate) fn query_scan(
        &self,
        name: &str,
        store: &str,
        request: &ScanRequest,
    ) -> Result<ScanAnswer, AdminError> {
        let (state, tasks) = self.queried(name, store)?;
        let (mut from_index, mut start) = parse_cursor(request.cursor.as_deref())?;
        let limit = request.limit.clamp(1, QUERY_ENTRIES_MAX);
        let (low, high) = bounds(request);
        let mut answer = ScanAnswer {
            entries: Vec::new(),
            cursor: None,
            positions: Vec::new(),
        };
        for (index, at) in tasks.iter().enumerate() {
            let index = index as i32;
            if request.among.partition.is_some_and(|p| p != at.partition) || index < from_index {
                continue;
            }
            // A partition that cannot answer fails the page: the same
            // cursor asks again.
            let readable = Self::readable(name, &state, at, request.among.stale)?
                .map_err(|why| Self::unavailable(vec![why]))?;
            answer.positions.push(readable.position);
            // A cursor is the client's to send: never before the bounds.
            let first = start
                .take()
                .filter(|key| *key > low)
                .unwrap_or_else(|| low.clone());
            let room = limit - answer.entries.len();
            let page = readable
                .view
                .scan(store, &first, high.as_deref(), room)
                .map_err(storage)?;
            answer
                .entries
                .extend(page.entries.into_iter().map(|(key, value)| Entry {
                    key: show_key(&key),
                    partition: at.partition,
                    value: render(&value),
                }));
            if let Some(next) = page.next {
                answer.cursor = Some(format_cursor(index, &next));
                return Ok(answer);
            }
            from_index = index + 1;
            if answer.entries.len() >= limit {
                answer.cursor = Some(format_cursor(index + 1, &low));
                return Ok(answer);
            }
        }
        Ok(answer)
    }

    /// `key`'s windows in a windowed store (either of the SDK's layouts,
    /// `sluice_sdk::window::key`) that start within `[from, to]`, by start.
    pub(crate) fn query_windows(
        &self,
        name: &str,
        store: &str,
        key: &[u8],
        (from, to): (i64, i64),
        among: Among,
    ) -> Result<WindowsAnswer, AdminError> {
        let (state, tasks) = self.queried(name, store)?;
        let mut answer = WindowsAnswer {
            key: show_key(key),
            partition: None,
            windows: Vec::new(),
            positions: Vec::new(),
        };
        let mut unavailable = Vec::new();
        for at in tasks {
            if among.partition.is_some_and(|p| p != at.partition) {
                continue;
            }
            let readable = match Self::readable(name, &state, &at, among.stale)? {
                Ok(readable) => readable,
                Err(why) => {
                    unavailable.push(why);
                    continue;
                }
            };
            let windows = windows_of(&readable.view, store, key, (from, to))?;
            if !windows.is_empty() {
                answer.partition = Some(at.partition);
                answer.positions.push(readable.position);
                answer.windows = windows;
                return Ok(answer);
            }
        }
        if !unavailable.is_empty() {
            return Err(Self::unavailable(unavailable));
        }
        Ok(answer)
    }
}

/// `key`'s windows starting within `[from, to]` in one partition's
/// committed state, by start, at most `QUERY_ENTRIES_MAX`: those of the
/// keyed layout (key length, key, start, end: one range), then those of
/// the by-window layout (1, start, key length, key, end), found window
/// start by window start (two seeks each; the open windows of a store
/// are few, whatever its keys), at most `WINDOW_STARTS_MAX` starts.
fn windows_of(
    view: &Committed<'_>,
    store: &str,
    key: &[u8],
    (from, to): (i64, i64),
) -> Result<Vec<Window>, AdminError> {
    use crate::state::{from_ordered_i64, ordered_i64, prefix_end};
    let length = (key.len() as u32).to_be_bytes();
    let time = |bytes: &[u8]| Some(from_ordered_i64(bytes.try_into().ok()?));
    let mut windows = Vec::new();
    let keyed: Vec<u8> = [&length[..], key].concat();
    let first = [&keyed[..], &ordered_i64(from)].concat();
    let last = [&keyed[..], &ordered_i64(to.saturating_add(1))].concat();
    let page = view
        .scan(store, &first, Some(&last), QUERY_ENTRIES_MAX)
        .map_err(storage)?;
    for (full, value) in &page.entries {
        let rest = &full[keyed.len()..];
        let times = (rest.get(..8).and_then(time), rest.get(8..).and_then(time));
        if let (Some(start), Some(end)) = times {
            windows.push(Window {
                start,
                end,
                value: render(value),
            });
        }
    }
    let by_window = |start: i64| [&[BY_WINDOW][..], &ordered_i64(start)].concat();
    let after_last = match to.checked_add(1) {
        Some(next) => by_window(next),
        None => vec![BY_WINDOW + 1],
    };
    let mut next_start = Some(from);
    let mut starts = 0;
    while let Some(at) = next_start.filter(|_| windows.len() < QUERY_ENTRIES_MAX) {
        let found = view
            .scan(store, &by_window(at), Some(&after_last), 1)
            .map_err(storage)?;
        let Some(start) = found
            .entries
            .first()
            .and_then(|(full, _)| time(full.get(1..9)?))
        else {
            break;
        };
        starts += 1;
        if starts > WINDOW_STARTS_MAX {
            return Err(AdminError::BadRequest(format!(
                "store {store} has more than {WINDOW_STARTS_MAX} open window starts \
                 from {from} on; narrow the range with from and to (starts in ms)"
            )));
        }
        let prefix = [&by_window(start)[..], &length, key].concat();
        let room = QUERY_ENTRIES_MAX - windows.len();
        let page = view
            .scan(store, &prefix, prefix_end(&prefix).as_deref(), room)
            .map_err(storage)?;
        for (full, value) in &page.entries {
            if let Some(end) = time(&full[prefix.len()..]) {
                windows.push(Window {
                    start,
                    end,
                    value: render(value),
                });
            }
        }
        next_start = start.checked_add(1);
    }
    windows.sort_by_key(|window| (window.start, window.end));
    Ok(windows)
}

/// The first byte of a key of the SDK's by-window layout.
const BY_WINDOW: u8 = 1;

/// The most window starts a windowed query looks into in one partition
/// (two seeks each): hopping windows of a 1 ms advance and an hour's
/// grace have millions open; `from`/`to` narrow the range.
const WINDOW_STARTS_MAX: usize = 10_000;

/// `[low, high)` of a scan: a prefix, or `from`/`to`.
fn bounds(request: &ScanRequest) -> (Vec<u8>, Option<Vec<u8>>) {
    match &request.prefix {
        Some(prefix) => (prefix.clone(), crate::state::prefix_end(prefix)),
        None => (request.from.clone().unwrap_or_default(), request.to.clone()),
    }
}

/// A cursor: `<task index>:<hex key>`.
fn format_cursor(partition: i32, key: &[u8]) -> String {
    format!("{partition}:{}", hex(key))
}

fn parse_cursor(cursor: Option<&str>) -> Result<(i32, Option<Vec<u8>>), AdminError> {
    let Some(cursor) = cursor else {
        return Ok((0, None));
    };
    let bad = || AdminError::BadRequest(format!("cursor {cursor:?} is not one this API gave"));
    let (partition, hex) = cursor.split_once(':').ok_or_else(bad)?;
    let partition: i32 = partition
        .parse()
        .ok()
        .filter(|index| *index >= 0)
        .ok_or_else(bad)?;
    let digits = hex.as_bytes();
    if digits.len() % 2 != 0 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    let value = |digit: u8| (digit as char).to_digit(16).unwrap_or(0) as u8;
    let key = digits
        .chunks(2)
        .map(|pair| value(pair[0]) << 4 | value(pair[1]))
        .collect();
    Ok((partition, Some(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_render_as_json_text_or_hex() {
        assert_eq!(render(b"42").value, Value::from(42));
        assert_eq!(render(br#"{"a":1}"#).encoding, "json");
        assert_eq!(render(b"hello").value, Value::from("hello"));
        assert_eq!(render(&[0xff, 0x00]).value, Value::from("ff00"));
    }

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let cursor = format_cursor(3, b"ab");
        assert_eq!(
            parse_cursor(Some(&cursor)).unwrap(),
            (3, Some(b"ab".to_vec()))
        );
        assert!(parse_cursor(Some("x")).is_err());
        assert!(parse_cursor(Some("1:zz")).is_err());
        assert!(parse_cursor(Some("0:aé1")).is_err());
        assert!(parse_cursor(Some("0:+f")).is_err());
    }
}
