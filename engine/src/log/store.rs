//! The log store of one data directory: the lock, the topics, their
//! metadata, and the hooks background tasks use (retention, compaction,
//! interval flush).
//!
//! `topic.json` (written atomically) holds:
//! `{"name": "...", "id": "<32 hex digits>", "partitions": N, "configs": {"k": "v"}}`
//! where `configs` are the overrides only; defaults come from the broker
//! config so that changing a default applies to every topic without one.
//! Creation writes partition directories first and `topic.json` last, so a
//! topic directory without it is an interrupted creation and is removed.
//! Each incarnation of a topic has its own directory, named after its id;
//! deletion goes through `deleting/` (see `topic_dir`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use super::handles::HandleCache;
use super::io::{self, Io};
use super::partition::{Partition, PartitionContext};
use super::topic_config::TopicConfig;
use super::topic_dir;
use super::{Clock, FlushPolicy, LogError};

/// Store-wide settings, with their defaults here (the `[log]` settings are [`super::LogConfig`]).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// When appends are fsynced.
    pub flush: FlushPolicy,
    /// Bytes of log between sparse index entries.
    pub index_interval_bytes: u64,
    /// Closed segments kept open at once (file handles plus indexes).
    pub open_segments_max: usize,
    /// Largest partition count of one topic.
    pub partitions_max: i32,
    /// Topics the broker holds at most.
    pub topics_max: usize,
    /// Partitions of all topics together at most: each holds open files,
    /// so this bounds the descriptors the log needs.
    pub partitions_total_max: usize,
    /// Idempotent producers remembered per partition (least recently
    /// active forgotten first).
    pub producers_per_partition_max: usize,
    /// Bytes one batch's records may decompress to; past it the batch is
    /// refused (`INVALID_RECORD` on produce), never allocated.
    pub decompressed_batch_bytes_max: usize,
    /// Bytes the key map of a compaction pass may take (24 per distinct
    /// key); a partition with more keys is compacted in several passes.
    pub compaction_memory_bytes_max: usize,
    /// Config of topics without overrides.
    pub topic_defaults: TopicConfig,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            flush: FlushPolicy::Always,
            index_interval_bytes: 4096,
            open_segments_max: 1024,
            partitions_max: 1024,
            topics_max: 10_000,
            partitions_total_max: 10_000,
            producers_per_partition_max: 10_000,
            decompressed_batch_bytes_max: super::records::DECOMPRESSED_BATCH_BYTES_MAX_DEFAULT,
            compaction_memory_bytes_max: super::offset_map::COMPACTION_MEMORY_BYTES_MAX_DEFAULT,
            topic_defaults: TopicConfig::default(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicMeta {
    name: String,
    id: String,
    partitions: i32,
    configs: BTreeMap<String, String>,
}

/// A partition that opened, or the reason it did not.
#[derive(Clone)]
pub(crate) enum PartitionSlot {
    /// Serving.
    Open(Arc<Partition>),
    /// Refused to open (damaged data); the rest of the broker serves.
    Failed(String),
}

pub struct Topic {
    name: String,
    id: [u8; 16],
    dir: PathBuf,
    /// Set when this incarnation is deleted; its partitions see it.
    retired: Arc<AtomicBool>,
    state: RwLock<TopicState>,
}

struct TopicState {
    partitions: Vec<PartitionSlot>,
    overrides: BTreeMap<String, String>,
    config: Arc<TopicConfig>,
}

impl Topic {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
    /// Kafka topic id (a random UUID fixed at creation).
    pub(crate) fn id(&self) -> [u8; 16] {
        self.id
    }
    /// Number of partitions.
    pub(crate) fn partition_count(&self) -> i32 {
        self.state.read().expect("topic lock").partitions.len() as i32
    }
    /// All partition slots, by partition number.
    pub(crate) fn partitions(&self) -> Vec<PartitionSlot> {
        self.state.read().expect("topic lock").partitions.clone()
    }
    pub(crate) fn config(&self) -> Arc<TopicConfig> {
        self.state.read().expect("topic lock").config.clone()
    }
    /// The overrides set on this topic.
    pub(crate) fn overrides(&self) -> BTreeMap<String, String> {
        self.state.read().expect("topic lock").overrides.clone()
    }
    /// One partition, if it exists and opened.
    pub(crate) fn partition(&self, id: i32) -> Result<Arc<Partition>, LogError> {
        let state = self.state.read().expect("topic lock");
        match usize::try_from(id)
            .ok()
            .and_then(|index| state.partitions.get(index))
        {
            Some(PartitionSlot::Open(partition)) => Ok(partition.clone()),
            Some(PartitionSlot::Failed(reason)) => Err(LogError::Unavailable {
                topic: self.name.clone(),
                partition: id,
                reason: reason.clone(),
            }),
            None => Err(LogError::UnknownPartition {
                topic: self.name.clone(),
                partition: id,
            }),
        }
    }
    fn open_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions()
            .into_iter()
            .filter_map(|slot| match slot {
                PartitionSlot::Open(partition) => Some(partition),
                PartitionSlot::Failed(_) => None,
            })
            .collect()
    }
}

/// The log store of one data directory.
pub struct LogStore {
    dir: PathBuf,
    options: StoreOptions,
    context: PartitionContext,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises topic metadata changes (create, delete, grow, alter), so
    /// none of them sees a topic another is halfway through changing.
    admin: std::sync::Mutex<()>,
    /// Held for the store's lifetime; the flock is released when it closes.
    _lock: File,
}

/// Checks a topic name as Kafka does.
pub(crate) fn validate_topic_name(name: &str) -> Result<(), LogError> {
    let invalid = |reason: &str| LogError::InvalidTopic {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are not allowed"));
    }
    if name.len() > 249 {
        return Err(invalid("longer than 249 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(
            "only ASCII letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    Ok(())
}

fn lock_data_dir(dir: &Path) -> Result<File, LogError> {
    let path = dir.join(".lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| LogError::io(&path, source))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(LogError::Locked {
                path: dir.to_path_buf(),
                holder: holder.trim().parse().ok(),
            });
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(LogError::io(&path, source)),
    }
    let pid = std::process::id().to_string();
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(pid.as_bytes()))
        .map_err(|source| LogError::io(&path, source))?;
    Ok(file)
}

impl LogStore {
    /// Opens (creating) the data directory, taking its lock, and opens every
    /// topic. A partition that fails to open is reported and skipped.
    pub fn open(
        dir: &Path,
        options: StoreOptions,
        io: Arc<dyn Io>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, LogError> {
        io.create_dir_all(&dir.join("topics"))
            .map_err(|source| LogError::io(dir, source))?;
        let lock = lock_data_dir(dir)?;
        let context = PartitionContext {
            io,
            clock,
            handles: Arc::new(HandleCache::new(options.open_segments_max)),
            flush: options.flush,
            index_interval_bytes: options.index_interval_bytes,
            producers_max: options.producers_per_partition_max,
            decompressed_batch_bytes_max: options.decompressed_batch_bytes_max,
            compaction_memory_bytes_max: options.compaction_memory_bytes_max,
            retired: Arc::default(),
        };
        let store = Self {
            dir: dir.to_path_buf(),
            options,
            context,
            topics: RwLock::default(),
            admin: std::sync::Mutex::default(),
            _lock: lock,
        };
        store.load_topics()?;
        Ok(store)
    }

    fn topics_dir(&self) -> PathBuf {
        self.dir.join("topics")
    }

    fn load_topics(&self) -> Result<(), LogError> {
        let io = self.context.io.as_ref();
        topic_dir::finish_deletions(io, &self.dir)?;
        let topics_dir = self.topics_dir();
        let mut entries = io
            .read_dir(&topics_dir)
            .map_err(|source| LogError::io(&topics_dir, source))?;
        entries.sort();
        for topic_dir in entries {
            let Some(topic) = self.load_topic(&topic_dir)? else {
                continue;
            };
            let mut topics = self.topics.write().expect("topics lock");
            if let Some(first) = topics.get(&topic.name) {
                tracing::error!(topic = %topic.name, first = %first.dir.display(), second = %topic.dir.display(),
                    "two directories claim the topic; serving the first, leaving the second untouched");
                continue;
            }
            topics.insert(topic.name.clone(), topic);
        }
        Ok(())
    }

    /// Opens the topic in `topic_dir` (migrating an old layout), or removes
    /// an interrupted creation.
    fn load_topic(&self, topic_dir: &Path) -> Result<Option<Arc<Topic>>, LogError> {
        let io = self.context.io.as_ref();
        let meta_path = topic_dir.join("topic.json");
        if !io.exists(&meta_path) {
            tracing::warn!(dir = %topic_dir.display(), "removing topic directory without topic.json (interrupted creation)");
            io.remove_dir_all(topic_dir)
                .and_then(|()| io.sync_dir(&self.topics_dir()))
                .map_err(|source| LogError::io(topic_dir, source))?;
            return Ok(None);
        }
        let bytes =
            io::read_file(io, &meta_path).map_err(|source| LogError::io(&meta_path, source))?;
        let bad = |reason: String| LogError::BadMetadata {
            path: meta_path.clone(),
            reason,
        };
        let meta: TopicMeta =
            serde_json::from_slice(&bytes).map_err(|error| bad(error.to_string()))?;
        validate_topic_name(&meta.name).map_err(|error| bad(error.to_string()))?;
        let id = uuid::Uuid::try_parse(&meta.id)
            .map_err(|error| bad(format!("bad topic id {:?}: {error}", meta.id)))?
            .into_bytes();
        let config = Arc::new(self.options.topic_defaults.with_overrides(&meta.configs)?);
        let dir = topic_dir::migrate(io, topic_dir, &meta.name, id)?;
        let topic = Arc::new(Topic {
            name: meta.name.clone(),
            id,
            dir,
            retired: Arc::default(),
            state: RwLock::new(TopicState {
                partitions: Vec::new(),
                overrides: meta.configs,
                config: config.clone(),
            }),
        });
        let slots = (0..meta.partitions)
            .map(|id| self.open_partition(&topic, id, &config))
            .collect();
        topic.state.write().expect("topic lock").partitions = slots;
        Ok(Some(topic))
    }

    /// The context of `topic`'s partitions: the store's, with the topic's
    /// retirement flag.
    fn topic_context(&self, topic: &Topic) -> PartitionContext {
        PartitionContext {
            retired: topic.retired.clone(),
            ..self.context.clone()
        }
    }

    fn open_partition(&self, topic: &Topic, id: i32, config: &Arc<TopicConfig>) -> PartitionSlot {
        let dir = topic.dir.join(id.to_string());
        match Partition::open(
            &topic.name,
            id,
            &dir,
            self.topic_context(topic),
            config.clone(),
        ) {
            Ok(partition) => PartitionSlot::Open(Arc::new(partition)),
            Err(error) => {
                tracing::error!(topic = %topic.name, partition = id, %error, "partition refused to open; it is unavailable, the rest of the broker serves");
                PartitionSlot::Failed(error.to_string())
            }
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
    pub(crate) fn options(&self) -> &StoreOptions {
        &self.options
    }

    pub(crate) fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().expect("topics lock").get(name).cloned()
    }
    /// All topics, by name.
    pub(crate) fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .expect("topics lock")
            .values()
            .cloned()
            .collect()
    }
    pub fn partition(&self, topic: &str, id: i32) -> Result<Arc<Partition>, LogError> {
        self.topic(topic)
            .ok_or_else(|| LogError::UnknownTopic(topic.to_string()))?
            .partition(id)
    }

    fn check_partitions(&self, count: i32) -> Result<(), LogError> {
        if count < 1 || count > self.options.partitions_max {
            return Err(LogError::InvalidPartitions {
                count,
                reason: format!("must be between 1 and {}", self.options.partitions_max),
            });
        }
        Ok(())
    }

    /// Refuses `new_topics` more topics with `new_partitions` more
    /// partitions when that would pass `log.topics_max` or
    /// `log.partitions_total_max`.
    pub(crate) fn check_capacity(
        &self,
        new_topics: usize,
        new_partitions: i32,
    ) -> Result<(), LogError> {
        let topics = self.topics.read().expect("topics lock");
        let (topics_max, partitions_max) =
            (self.options.topics_max, self.options.partitions_total_max);
        let topic_count = topics.len() + new_topics;
        if new_topics > 0 && topic_count > topics_max {
            return Err(LogError::LimitReached {
                reason: format!(
                    "the broker holds {} topics; {topic_count} is above log.topics_max {topics_max}",
                    topics.len()
                ),
            });
        }
        let current: usize = topics
            .values()
            .map(|topic| topic.partition_count().max(0) as usize)
            .sum();
        let total = current + new_partitions.max(0) as usize;
        if total > partitions_max {
            return Err(LogError::LimitReached {
                reason: format!(
                    "the broker holds {current} partitions; {total} is above \
                     log.partitions_total_max {partitions_max}"
                ),
            });
        }
        Ok(())
    }

    fn write_meta(&self, topic: &Topic) -> Result<(), LogError> {
        let state = topic.state.read().expect("topic lock");
        let meta = TopicMeta {
            name: topic.name.clone(),
            id: uuid::Uuid::from_bytes(topic.id).simple().to_string(),
            partitions: state.partitions.len() as i32,
            configs: state.overrides.clone(),
        };
        let path = topic.dir.join("topic.json");
        let bytes = serde_json::to_vec_pretty(&meta).expect("topic metadata serializes");
        io::write_atomic(self.context.io.as_ref(), &path, &bytes)
            .map_err(|source| LogError::io(&path, source))
    }

    /// Creates a topic. Validates everything before touching the disk.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, LogError> {
        let _admin = self.admin.lock().expect("admin lock");
        validate_topic_name(name)?;
        self.check_partitions(partitions)?;
        if self.topic(name).is_none() {
            self.check_capacity(1, partitions)?;
        }
        let config = Arc::new(self.options.topic_defaults.with_overrides(&overrides)?);
        let mut topics = self.topics.write().expect("topics lock");
        if topics.contains_key(name) {
            return Err(LogError::TopicExists(name.to_string()));
        }
        let id = uuid::Uuid::new_v4().into_bytes();
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id,
            dir: self.topics_dir().join(topic_dir::dir_name(name, id)),
            retired: Arc::default(),
            state: RwLock::new(TopicState {
                partitions: Vec::new(),
                overrides,
                config: config.clone(),
            }),
        });
        let mut slots = Vec::new();
        for id in 0..partitions {
            let dir = topic.dir.join(id.to_string());
            match Partition::open(name, id, &dir, self.topic_context(&topic), config.clone()) {
                Ok(partition) => slots.push(PartitionSlot::Open(Arc::new(partition))),
                Err(error) => {
                    // E.g. out of file descriptors: close what was opened and
                    // leave no half-created topic behind (best effort; a
                    // restart removes a directory without topic.json anyway).
                    drop(slots);
                    let _ = self.context.io.remove_dir_all(&topic.dir);
                    return Err(error);
                }
            }
        }
        topic.state.write().expect("topic lock").partitions = slots;
        self.write_meta(&topic)?;
        let topics_dir = self.topics_dir();
        self.context
            .io
            .sync_dir(&topics_dir)
            .map_err(|source| LogError::io(&topics_dir, source))?;
        topics.insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Deletes a topic and its data: retires its partitions (writes through
    /// handles still held fail), moves its directory into `deleting/`
    /// (fsynced; from here on the deletion survives a crash), then removes
    /// the files.
    /// With `id`, only the incarnation with that id: a request naming a
    /// topic by id never deletes a topic created under the same name since.
    pub(crate) fn delete_topic(&self, name: &str, id: Option<[u8; 16]>) -> Result<(), LogError> {
        let _admin = self.admin.lock().expect("admin lock");
        let topic = self
            .topic(name)
            .filter(|topic| id.is_none_or(|id| id == topic.id))
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        let partitions = topic.open_partitions();
        topic_dir::retire(&topic.retired, &partitions);
        let io = self.context.io.as_ref();
        let tombstone = match topic_dir::move_out(io, &self.dir, &topic.dir) {
            Ok(tombstone) => tombstone,
            Err(error) => {
                // Not moved: the topic stays, whole, and serves again.
                topic
                    .retired
                    .store(false, std::sync::atomic::Ordering::SeqCst);
                return Err(error);
            }
        };
        self.topics.write().expect("topics lock").remove(name);
        for partition in partitions {
            for meta in partition.segment_metas() {
                let path = super::segment::segment_path(
                    partition.dir(),
                    meta.base_offset,
                    super::segment::LOG_SUFFIX,
                );
                self.context.handles.evict(&path);
            }
        }
        topic_dir::purge(io, &topic.dir, &tombstone)?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Grows a topic to `total` partitions.
    pub(crate) fn create_partitions(&self, name: &str, total: i32) -> Result<(), LogError> {
        let _admin = self.admin.lock().expect("admin lock");
        let topic = self
            .topic(name)
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        self.check_partitions(total)?;
        let current = topic.partition_count();
        if total <= current {
            return Err(LogError::InvalidPartitions {
                count: total,
                reason: format!(
                    "topic {name} already has {current} partitions; the count can only grow"
                ),
            });
        }
        self.check_capacity(0, total - current)?;
        let config = topic.config();
        let mut added = Vec::new();
        for id in current..total {
            let dir = topic.dir.join(id.to_string());
            added.push(PartitionSlot::Open(Arc::new(Partition::open(
                name,
                id,
                &dir,
                self.topic_context(&topic),
                config.clone(),
            )?)));
        }
        topic
            .state
            .write()
            .expect("topic lock")
            .partitions
            .extend(added);
        self.write_meta(&topic)
    }

    /// Replaces a topic's config overrides.
    pub(crate) fn set_topic_config(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
    ) -> Result<(), LogError> {
        self.update_topic_config(name, |current| *current = overrides)
            .map(drop)
    }

    /// Changes a topic's overrides with `change`, read and written under
    /// the store's admin lock, so two changes cannot lose one another.
    /// Returns the overrides now in force.
    pub(crate) fn update_topic_config(
        &self,
        name: &str,
        change: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<BTreeMap<String, String>, LogError> {
        let _admin = self.admin.lock().expect("admin lock");
        let topic = self
            .topic(name)
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        let mut overrides = topic.overrides();
        change(&mut overrides);
        let config = Arc::new(self.options.topic_defaults.with_overrides(&overrides)?);
        {
            let mut state = topic.state.write().expect("topic lock");
            state.overrides = overrides.clone();
            state.config = config.clone();
        }
        for partition in topic.open_partitions() {
            partition.set_config(config.clone());
        }
        self.write_meta(&topic)?;
        Ok(overrides)
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.topics()
            .iter()
            .flat_map(|topic| topic.open_partitions())
            .collect()
    }

    /// One round of retention and compaction over every partition. Errors
    /// are logged per partition; one bad partition does not stop the rest.
    pub(crate) fn run_maintenance(&self) {
        for partition in self.all_partitions() {
            if let Err(error) = partition.enforce_retention() {
                tracing::error!(topic = %partition.topic(), partition = partition.id(), %error, "retention failed");
            }
            if let Err(error) = partition.compact() {
                tracing::error!(topic = %partition.topic(), partition = partition.id(), %error, "compaction failed");
            }
        }
    }

    /// Fsyncs every partition (the `flush = interval` task).
    pub(crate) fn flush_all(&self) {
        for partition in self.all_partitions() {
            if partition.poisoned().is_none() {
                if let Err(error) = partition.flush() {
                    tracing::error!(topic = %partition.topic(), partition = partition.id(), %error, "flush failed");
                }
            }
        }
    }

    /// Fsyncs everything for a clean shutdown. The lock is released when the
    /// store is dropped.
    pub fn close(&self) -> Result<(), LogError> {
        let mut first_error = None;
        for partition in self.all_partitions() {
            if let Err(error) = partition.close() {
                tracing::error!(topic = %partition.topic(), partition = partition.id(), %error, "close failed");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
