//! The broker's configuration: one serde struct composed of each module's
//! own settings type (`[log]` is the log's `LogConfig`, `[kafka]` the
//! server's `KafkaConfig`, `[groups]`, `[processors]`), each with its
//! defaults beside it.
//!
//! Precedence, highest first: command-line flags, `SLUICE_*` environment
//! variables (clap reads both), the TOML file given by `--config`, then the
//! defaults below.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::acl::AclConfig;
use crate::group::GroupConfig;
use crate::http::AdminConfig;
use crate::log::{LogConfig, LogError};
use crate::processor::ProcessorConfig;
use crate::server::KafkaConfig;
use crate::state::StateConfig;
use crate::transaction::TransactionConfig;

/// Everything `sluice serve` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    pub(crate) listen: SocketAddr,
    /// HTTP admin listener (`/health`).
    pub(crate) http: SocketAddr,
    /// Where topics and metadata live.
    pub(crate) data_dir: PathBuf,
    pub(crate) log: LogConfig,
    /// The Kafka listener.
    pub(crate) kafka: KafkaConfig,
    pub(crate) groups: GroupConfig,
    /// `[transactions]`: the transaction coordinator's bounds.
    pub(crate) transactions: TransactionConfig,
    /// WebAssembly processors (`[processors]`).
    pub(crate) processors: ProcessorConfig,
    /// Keyed processor state (`[state]`).
    pub(crate) state: StateConfig,
    /// Who may use the admin API (`[admin]`).
    pub(crate) admin: AdminConfig,
    /// Who may do what on the Kafka listener (`[acl]`).
    pub(crate) acl: AclConfig,
    /// What `GET /metrics` exposes (`[metrics]`).
    pub(crate) metrics: crate::http::MetricsConfig,
    /// Listen on addresses other than loopback although the Kafka
    /// listener authenticates nobody (`PLAINTEXT`, `SSL`) or the admin API
    /// is plain HTTP (`--insecure`).
    pub(crate) insecure: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            http: SocketAddr::from(([127, 0, 0, 1], 9644)),
            data_dir: PathBuf::from("./sluice-data"),
            log: LogConfig::default(),
            kafka: KafkaConfig::default(),
            groups: GroupConfig::default(),
            transactions: TransactionConfig::default(),
            processors: ProcessorConfig::default(),
            state: StateConfig::default(),
            admin: AdminConfig::default(),
            acl: AclConfig::default(),
            metrics: Default::default(),
            insecure: false,
        }
    }
}

impl Config {
    /// Reads a TOML config file.
    pub(crate) fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let config: Self = toml::from_str(&text)
            .with_context(|| format!("parsing config file {}", path.display()))?;
        config
            .validate()
            .with_context(|| format!("checking config file {}", path.display()))?;
        Ok(config)
    }

    /// Checks values that parse but make no sense, by the rules the same
    /// settings must pass elsewhere (topic defaults as topic overrides).
    fn validate(&self) -> anyhow::Result<()> {
        self.state.validate()?;
        self.processors.validate()?;
        match self.log.topic_defaults.validate() {
            Ok(()) => Ok(()),
            // Named by its TOML key, not Kafka's dotted name.
            Err(LogError::InvalidConfig { name, reason }) => {
                anyhow::bail!("[log.topic_defaults] {}: {reason}", name.replace('.', "_"))
            }
            Err(error) => anyhow::bail!("[log.topic_defaults]: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::FlushPolicy;

    #[test]
    fn file_values_override_defaults_and_unknown_keys_fail() {
        let config: Config = toml::from_str(
            r#"
            listen = "127.0.0.1:19092"
            [log]
            flush = "interval:50"
            [log.topic_defaults]
            retention_ms = 1000
            cleanup_policy = "compact"
            "#,
        )
        .unwrap();
        assert_eq!(config.listen.port(), 19092);
        assert_eq!(config.log.flush, FlushPolicy::Interval { interval_ms: 50 });
        assert_eq!(config.log.topic_defaults.retention_ms, 1000);
        assert_eq!(config.http, Config::default().http);
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
        assert!(toml::from_str::<Config>("[log]\nflush = \"sometimes\"").is_err());
    }

    /// The README's config file sample ("Every key is optional; shown with
    /// its default"), so the documented keys and defaults cannot drift.
    fn readme_sample() -> &'static str {
        let readme = include_str!("../../README.md");
        let section = &readme[readme.find("### Config file").expect("the section")..];
        let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let length = section[start..].find("```").expect("the block's end");
        &section[start..start + length]
    }

    #[test]
    fn the_readme_sample_parses_to_the_defaults() {
        let sample: Config = toml::from_str(readme_sample()).expect("the README sample parses");
        assert_eq!(sample.transactions, TransactionConfig::default());
        assert_eq!(sample.groups, GroupConfig::default());
        assert_eq!(sample, Config::default());
    }
}
