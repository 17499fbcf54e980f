//! `top-n`: the running top `n` items by count (the most viewed pages, say):
//! every record counts one for its item (the JSON field `item`, a dotted
//! path), and whenever a record changes the top list, the new list is
//! written under the key `top` (a table: on a compacted topic the latest
//! record is the current top list).
//!
//! A top list over the whole input needs every record in one task, so the
//! records are first re-keyed to the single key `top` through the
//! processor's repartition topic (`sluice.repartition`, see
//! `sluice_sdk::repartition`) and counted when they come back. With
//! `repartition=false` each task ranks its own partition's records (right
//! for a single-partition input).
//!
//! The list is kept exactly, without a scan of all counts: counts only
//! grow, so an item can only enter the list when its own count rises,
//! which is when it is looked at. Ranking: count descending, then item
//! ascending.
//!
//! Store `top` (deploy with `--store top`): `count/<item>` → the item's
//! count, and `top` → the list, `[{"item":"…","count":…}, …]` (what state
//! queries show). Output value: `{"top":[…]}`, key `top`. Records without
//! the field are skipped; a value that is not JSON is an error naming the
//! record.
//!
//! ```sh
//! sluice processor deploy top-pages --wasm target/wasm32-wasip2/plugin/top_n.wasm \
//!     --input page-views --output top-pages --store top --config item=page --config n=5
//! ```

use serde::{Deserialize, Serialize};
use sluice_sdk::aggregate;
use sluice_sdk::json::{Path, Value};
use sluice_sdk::repartition::{self, Step};
use sluice_sdk::state::KeyValueStore;
use sluice_sdk::{Batch, Error, Output, Outputs, ProcessError, Processor, Record, Result};

/// The store counts and the list live in (deploy with `--store top`).
pub const STORE: &str = "top";

/// The key of the list, in the store and on the output.
pub const TOP_KEY: &str = "top";

/// The most items a list may hold.
pub const N_MAX: usize = 1_000;

/// The `--config` pairs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The field naming the item.
    item: Path,
    /// How many items the list holds.
    #[serde(default = "default_n")]
    n: usize,
    /// Rank over all partitions through the repartition topic (default).
    #[serde(default = "yes")]
    repartition: bool,
}

fn default_n() -> usize {
    10
}

fn yes() -> bool {
    true
}

/// One ranked item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranked {
    /// The item.
    pub item: String,
    /// How many records named it.
    pub count: u64,
}

/// The written value.
#[derive(Debug, Serialize)]
struct Written<'a> {
    top: &'a [Ranked],
}

/// `list` (ranked, at most `n`) after `item`'s count became `count`;
/// whether it changed.
pub fn rank(list: &mut Vec<Ranked>, n: usize, item: &str, count: u64) -> bool {
    let order = |a: &Ranked, b: &Ranked| b.count.cmp(&a.count).then_with(|| a.item.cmp(&b.item));
    if let Some(entry) = list.iter_mut().find(|entry| entry.item == item) {
        entry.count = count;
    } else {
        let candidate = Ranked {
            item: item.to_owned(),
            count,
        };
        let beats_last = list
            .last()
            .is_none_or(|last| order(&candidate, last).is_lt());
        if list.len() >= n && !beats_last {
            return false;
        }
        list.push(candidate);
    }
    list.sort_by(order);
    list.truncate(n);
    true
}

/// The processor.
#[derive(Debug)]
pub struct TopN {
    item: Path,
    n: usize,
    repartition: bool,
    counts: KeyValueStore<String, u64>,
    lists: KeyValueStore<String, Vec<Ranked>>,
}

impl TopN {
    /// A record's item; `None` when it has none (or is a tombstone).
    fn item(&self, record: &Record) -> Result<Option<String>> {
        if record.value.is_none() {
            return Ok(None);
        }
        let value: Value = record.json()?;
        Ok(match self.item.get(&value) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(other) => Some(other.to_string()),
        })
    }

    /// Counts the batch's items and ranks them.
    fn count(&self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        let mut items = Vec::with_capacity(batch.len());
        for (source, record) in batch.indexed() {
            let item = self
                .item(&record)
                .map_err(|error| ProcessError::at(source, error))?;
            if let Some(item) = item {
                items.push((source, format!("count/{item}")));
            }
        }
        if items.is_empty() {
            return Ok(());
        }
        let updates = aggregate::count(&self.counts, items)?;
        let mut list = self.lists.get(TOP_KEY)?.unwrap_or_default();
        let mut changed = false;
        for update in updates {
            let item = &update.key["count/".len()..];
            if rank(&mut list, self.n, item, update.aggregate) {
                changed = true;
                let output = Output::upsert(TOP_KEY, &Written { top: &list })?;
                outputs.push(update.source, output);
            }
        }
        if changed {
            self.lists.put(TOP_KEY, &list)?;
        }
        Ok(())
    }
}

impl Processor for TopN {
    type Config = Config;

    fn init(config: Config) -> Result<Self> {
        if config.n == 0 || config.n > N_MAX {
            return Err(Error::new(format!(
                "n = {} is outside 1..={N_MAX}",
                config.n
            )));
        }
        Ok(Self {
            item: config.item,
            n: config.n,
            repartition: config.repartition,
            counts: KeyValueStore::open(STORE)?,
            lists: KeyValueStore::open(STORE)?,
        })
    }

    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        if !self.repartition {
            return self.count(batch, outputs);
        }
        match repartition::step(&batch) {
            // Everything to one key, so one task ranks it all.
            Step::Input => repartition::group_by(batch, outputs, |record: &Record| {
                Ok::<_, Error>(record.value.is_some().then(|| TOP_KEY.as_bytes().to_vec()))
            }),
            Step::Repartitioned => self.count(batch, outputs),
        }
    }
}

sluice_sdk::export!(TopN);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use sluice_sdk::testing::{Harness, Task};

    use super::*;

    fn harness(config: &[(&str, &str)]) -> Harness {
        Task::new().store(STORE).processor::<TopN>(config).unwrap()
    }

    fn view(user: &str, page: &str) -> Record {
        Record::new(json!({"user": user, "page": page}).to_string()).with_key(user)
    }

    fn ranked(pairs: &[(&str, u64)]) -> Vec<Ranked> {
        pairs
            .iter()
            .map(|(item, count)| Ranked {
                item: (*item).to_owned(),
                count: *count,
            })
            .collect()
    }

    #[test]
    fn the_list_follows_the_counts_through_the_repartition_topic() {
        let mut top = harness(&[("item", "page"), ("n", "2")]);
        let outputs = top
            .run(vec![
                view("ann", "/a"),
                view("bob", "/b"),
                view("cat", "/c"),
            ])
            .unwrap();
        assert_eq!(
            outputs.len(),
            2,
            "/c (1) does not beat /b (1): ties by name"
        );
        assert!(outputs.iter().all(|o| o.key_str() == Ok(TOP_KEY)));
        let outputs = top.run(vec![view("ann", "/c"), view("dan", "/c")]).unwrap();
        let last: Value = outputs.last().unwrap().json().unwrap();
        assert_eq!(
            last,
            json!({"top": [{"item": "/c", "count": 3}, {"item": "/a", "count": 1}]})
        );
        // Counted and stored in the repartition topic's task.
        assert_eq!(top.get(STORE, TOP_KEY.as_bytes()), None);
        let stored: Vec<Ranked> =
            top.in_repartition_task(|task| task.get_json(STORE, TOP_KEY.as_bytes()).unwrap());
        assert_eq!(stored, ranked(&[("/c", 3), ("/a", 1)]));
    }

    /// The incremental list equals ranking all counts, at every step.
    #[test]
    fn the_list_is_exact() {
        let mut list = Vec::new();
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut seed: u64 = 17;
        for _ in 0..2_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Skewed: low numbers are popular.
            let item = format!("p{}", (seed % 20).min(seed % 7 + seed % 3));
            let count = counts.entry(item.clone()).or_default();
            *count += 1;
            rank(&mut list, 3, &item, *count);
            let mut all: Vec<Ranked> = counts
                .iter()
                .map(|(item, count)| Ranked {
                    item: item.clone(),
                    count: *count,
                })
                .collect();
            all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.item.cmp(&b.item)));
            all.truncate(3);
            assert_eq!(list, all);
        }
    }

    #[test]
    fn without_repartition_each_task_ranks_its_own_records() {
        let mut top = harness(&[("item", "page"), ("repartition", "false")]);
        let outputs = top.run(vec![view("ann", "/a")]).unwrap();
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].source, 0);
        assert!(outputs[0].topic.is_none());
    }

    #[test]
    fn bad_records_and_configs_are_errors() {
        let mut top = harness(&[("item", "page")]);
        let error = top
            .run(vec![view("ann", "/a"), Record::new("nope").with_key("bob")])
            .unwrap_err();
        assert!(error.message().contains("invalid JSON"), "{error}");
        let counted = top.in_repartition_task(|task| task.get(STORE, b"count//a"));
        assert_eq!(counted, None, "nothing counted");
        for bad in [&[("item", "page"), ("n", "0")][..], &[("n", "3")]] {
            assert!(Task::new().store(STORE).processor::<TopN>(bad).is_err());
        }
    }
}
