//! Checking a deploy request before anything changes: names, sizes,
//! topics, the error policy, limits, the broker-wide plugin memory, and
//! the state settings (stores, tables, guarantee, commit interval).

use sha2::{Digest, Sha256};

use super::{dedup, hex, AdminError, Processors};
use crate::processor::spec::{self, DeployRequest, Deployment, Guarantee, OnError};
use crate::processor::status::now_ms;

impl Processors {
    pub(super) fn validate(
        &self,
        name: &str,
        request: &DeployRequest,
        wasm: &[u8],
    ) -> Result<Deployment, AdminError> {
        let bad = |m: String| AdminError::BadRequest(m);
        spec::validate_name(name).map_err(bad)?;
        if wasm.len() as u64 > self.config.wasm_bytes_max {
            return Err(bad(format!(
                "the plugin is {} bytes; the limit is {} (processors.wasm_bytes_max)",
                wasm.len(),
                self.config.wasm_bytes_max
            )));
        }
        let known = self
            .running
            .lock()
            .expect("registry lock")
            .contains_key(name);
        if !known && self.running.lock().expect("registry lock").len() >= self.config.processors_max
        {
            return Err(bad(format!(
                "{} processors are deployed, the limit (processors.processors_max)",
                self.config.processors_max
            )));
        }
        if request.inputs.is_empty() || request.outputs.is_empty() {
            return Err(bad(
                "a processor needs at least one input and one output topic".into(),
            ));
        }
        for topic in request.inputs.iter().chain(&request.outputs) {
            if self.store.topic(topic).is_none() {
                return Err(bad(format!(
                    "topic {topic:?} does not exist; create it first (sluice topic create {topic})"
                )));
            }
        }
        let policy =
            OnError::parse(request.on_error.as_deref().unwrap_or("fail"), name).map_err(bad)?;
        let mut writes: Vec<&String> = request.outputs.iter().collect();
        if let OnError::DeadLetter(topic) = &policy {
            writes.push(topic);
        }
        if let Some(topic) = writes.iter().find(|t| request.inputs.contains(t)) {
            return Err(bad(format!(
                "topic {topic:?} is both an input and an output (or the dead-letter topic); \
                 the processor would read its own records forever"
            )));
        }
        let limits = request.limits.apply(&self.config.limits).map_err(bad)?;
        let (guarantee, stores) = self.check_state(name, request).map_err(bad)?;
        let stateful =
            !stores.is_empty() || !request.tables.is_empty() || guarantee == Guarantee::ExactlyOnce;
        self.check_memory(name, &request.inputs, &limits, stateful)
            .map_err(bad)?;
        Ok(Deployment {
            name: name.to_string(),
            inputs: dedup(&request.inputs),
            outputs: dedup(&request.outputs),
            config: request.config.clone(),
            on_error: policy.to_string(),
            limits,
            wasm_sha256: hex(&Sha256::digest(wasm)),
            wasm_bytes: wasm.len() as u64,
            artifact_sha256: None,
            deployed_at_ms: now_ms(),
            paused: false,
            stores,
            guarantee,
            commit_interval_ms: request
                .commit_interval_ms
                .unwrap_or(spec::COMMIT_INTERVAL_MS_DEFAULT),
            idle_advance_ms: request.idle_advance_ms,
            tables: request.tables.clone(),
            changelog: request.changelog,
        })
    }

    /// Checks the state settings of a deploy request: store names, the
    /// guarantee, the commit interval, and that a new start position of a
    /// processor with state says what happens to it.
    fn check_state(
        &self,
        name: &str,
        request: &DeployRequest,
    ) -> Result<(Guarantee, Vec<String>), String> {
        let stores = dedup(&request.stores);
        for store in &stores {
            crate::state::validate_store_name(store).map_err(|e| e.to_string())?;
        }
        let guarantee = match &request.guarantee {
            Some(text) => Guarantee::parse(text)?,
            None if stores.is_empty() => Guarantee::AtLeastOnce,
            None => Guarantee::ExactlyOnce,
        };
        for table in &request.tables {
            crate::state::validate_store_name(&table.store).map_err(|e| e.to_string())?;
            if stores.contains(&table.store) {
                return Err(format!(
                    "{:?} is both a store and a table; give them different names",
                    table.store
                ));
            }
            if self.store.topic(&table.topic).is_none() {
                return Err(format!(
                    "table topic {:?} does not exist; create it first",
                    table.topic
                ));
            }
            if request.outputs.contains(&table.topic) {
                return Err(format!(
                    "topic {:?} is both a table and an output of the processor",
                    table.topic
                ));
            }
        }
        let stateful =
            !stores.is_empty() || !request.tables.is_empty() || guarantee == Guarantee::ExactlyOnce;
        if stateful {
            self.check_co_partitioned(&dedup(&request.inputs))?;
        }
        if let Some(ms) = request.commit_interval_ms {
            if !(1..=60_000).contains(&ms) {
                return Err(format!("commit_interval_ms = {ms} is outside 1..=60000"));
            }
        }
        if let Some(ms) = request.idle_advance_ms {
            if !(1..=86_400_000).contains(&ms) {
                return Err(format!("idle_advance_ms = {ms} is outside 1..=86400000"));
            }
        }
        if request.reset_state && request.from.is_none() {
            return Err("--reset-state needs --from: where to reprocess from".into());
        }
        let has_stores = self.state.existing(name).is_some()
            && self
                .running
                .lock()
                .expect("registry lock")
                .get(name)
                .is_some_and(|r| !r.deployment.stores.is_empty());
        self.check_changelog(name, request, (guarantee, &stores), has_stores)?;
        if request.from.is_some() && has_stores && !request.reset_state {
            return Err(format!(
                "processor {name} has state: --from would reprocess records already counted \
                 in it; add --reset-state to throw the state away and reprocess, or leave \
                 --from out to keep state and position (a plugin upgrade)"
            ));
        }
        Ok((guarantee, stores))
    }

    /// `--changelog`: exactly-once processors with stores only (at least
    /// once, a crash could leave part of a commit's changes in the
    /// changelog without the rest, and a restore would then apply changes
    /// twice), and not switched on for state built without it, unless that
    /// state is thrown away.
    fn check_changelog(
        &self,
        name: &str,
        request: &DeployRequest,
        (guarantee, stores): (Guarantee, &[String]),
        has_stores: bool,
    ) -> Result<(), String> {
        if !request.changelog {
            return Ok(());
        }
        if stores.is_empty() {
            return Err(
                "--changelog records the changes of the processor's stores, and it \
                 declares none (add --store NAME)"
                    .into(),
            );
        }
        if guarantee != Guarantee::ExactlyOnce {
            return Err(
                "--changelog needs --guarantee exactly-once: the changelog is written \
                 in each commit's transaction, so it holds whole commits or nothing"
                    .into(),
            );
        }
        let had_changelog = self
            .running
            .lock()
            .expect("registry lock")
            .get(name)
            .is_some_and(|r| r.deployment.changelog);
        if has_stores && !had_changelog && !request.reset_state {
            return Err(format!(
                "processor {name} has state built without a changelog, which would lack it; \
                 redeploy with --from earliest --reset-state to rebuild the state and its \
                 changelog from the input, or leave --changelog out"
            ));
        }
        Ok(())
    }

    /// A stateful processor's inputs must be co-partitioned: a task reads
    /// partition `p` of each, and its state is kept per task, so the same
    /// key must land in the same partition number of every input.
    fn check_co_partitioned(&self, inputs: &[String]) -> Result<(), String> {
        let counts: Vec<(String, i32)> = inputs
            .iter()
            .filter_map(|topic| {
                let count = self.store.topic(topic)?.partition_count();
                Some((topic.clone(), count))
            })
            .collect();
        if counts.windows(2).any(|pair| pair[0].1 != pair[1].1) {
            let listed: Vec<String> = counts
                .iter()
                .map(|(topic, count)| format!("{topic} has {count}"))
                .collect();
            return Err(format!(
                "the inputs of a stateful or exactly-once processor must be co-partitioned \
                 (the same number of partitions, keyed alike), but {}; give them the same \
                 partition count or deploy one processor per input",
                listed.join(", ")
            ));
        }
        Ok(())
    }

    /// Instances a processor reading `inputs` runs: one per partition, or
    /// for a stateful processor (`co_partitioned`) one per partition of
    /// its inputs together.
    fn instances(&self, inputs: &[String], co_partitioned: bool) -> u64 {
        let counts = dedup(inputs)
            .iter()
            .filter_map(|topic| self.store.topic(topic))
            .map(|topic| u64::try_from(topic.partition_count()).unwrap_or(0))
            .collect::<Vec<_>>();
        if co_partitioned {
            counts.into_iter().max().unwrap_or(0)
        } else {
            counts.into_iter().sum()
        }
    }

    /// Refuses a deploy whose instances' memory limits, with those of every
    /// other deployed processor, would exceed `processors.memory_bytes_max`.
    fn check_memory(
        &self,
        name: &str,
        inputs: &[String],
        limits: &spec::Limits,
        stateful: bool,
    ) -> Result<(), String> {
        let others: u64 =
            self.snapshot()
                .iter()
                .filter(|running| running.deployment.name != name)
                .map(|running| {
                    let deployment = &running.deployment;
                    deployment.limits.memory_bytes_max.saturating_mul(
                        self.instances(&deployment.inputs, deployment.is_stateful()),
                    )
                })
                .fold(0, u64::saturating_add);
        let instances = self.instances(inputs, stateful);
        let this = limits.memory_bytes_max.saturating_mul(instances);
        let total = others.saturating_add(this);
        if total > self.config.memory_bytes_max {
            return Err(format!(
                "not enough plugin memory: {instances} instances (one per input partition) of \
                 {} bytes (memory_bytes_max) need {this} bytes; with the {others} bytes of the \
                 processors already deployed that is {total} bytes, over the broker's \
                 processors.memory_bytes_max of {} bytes; lower --memory-max or remove a processor",
                limits.memory_bytes_max, self.config.memory_bytes_max
            ));
        }
        Ok(())
    }
}
