//! `sluice serve`: opens the store, binds the listeners, runs the background
//! tasks, and on shutdown stops accepting, lets in-flight work finish,
//! fsyncs and releases the data directory.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::group::offsets::OffsetStore;
use crate::group::GroupCoordinator;
use crate::log::{io, FlushPolicy, LogStore, StdIo, SystemClock};
use crate::server::BrokerContext;
use crate::shutdown::Shutdown;
use crate::transaction::TransactionCoordinator;

/// How long in-flight work gets after the shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// Addresses actually bound (ports may have been 0).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    pub kafka: SocketAddr,
    pub http: SocketAddr,
}

/// Runs the broker until `shutdown` resolves. `on_ready` is called once
/// everything serves: both listeners, the committed offsets, the
/// processors.
pub(crate) async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(Bound),
) -> anyhow::Result<()> {
    let started = Instant::now();
    crate::metrics::set_enabled(config.metrics.enabled);
    crate::server::open_files::raise_limit(config.kafka.connections_max);
    // Certificates first: a bad one stops the start before anything opens.
    let (kafka_tls, admin_tls) = open_tls(&config)?;
    let store = open_store(&config).await?;
    let (kafka, http) = bind(&config, admin_tls.is_some()).await?;
    let bound = Bound {
        kafka: kafka.local_addr()?,
        http: http.local_addr()?,
    };
    let groups = open_groups(&config).await?;
    let (state, mut owned) = open_state(&config).await?;
    // Changelog writers too: their tasks end their transactions even when
    // the state naming them was lost (they restore it first).
    owned.extend(crate::processor::stateful::changelog_producer_ids(&store));
    let transactions = open_transactions(&config, &store, &groups, owned).await?;
    let (stop, stopped) = watch::channel(false);
    let users = Arc::new(
        crate::server::sasl::Users::open(&config.data_dir).context("reading the SASL users")?,
    );
    let acls = crate::acl::Acls::open(&config.data_dir, config.acl.acls_max)
        .context("reading the ACLs")?;
    let acls = Arc::new(crate::acl::Authorizer::new(
        config.acl.clone(),
        Arc::new(acls),
    ));
    let context = broker_context(
        &config,
        bound,
        &store,
        &groups,
        &transactions,
        &stopped,
        (&users, &acls),
    )?;
    let mut tasks = JoinSet::new();
    tasks.spawn(crate::server::serve(
        kafka,
        kafka_tls,
        context.clone(),
        stopped.clone(),
    ));
    // Compiling the persisted plugins is CPU-bound: a blocking thread.
    let processors = {
        let (data_dir, settings) = (config.data_dir.clone(), config.processors.clone());
        let (store, groups, stopped) = (store.clone(), groups.clone(), stopped.clone());
        let allocator = transactions.clone();
        let producer_ids: crate::processor::stateful::ProducerIds =
            Arc::new(move || allocator.allocate_producer_id());
        tokio::task::spawn_blocking(move || {
            crate::processor::Processors::open(
                &data_dir,
                settings,
                store,
                groups,
                (state, producer_ids),
                stopped,
            )
        })
        .await?
        .context("starting the processor runtime")?
    };
    tasks.spawn(processors.clone().run());
    let health = crate::http::HealthInfo::new(started, &config.data_dir);
    let auth = crate::http::AdminAuth::open(&config.admin, &config.data_dir, bound.http)
        .context("setting up the admin API's token")?;
    tasks.spawn(crate::http::serve(
        (http, admin_tls),
        health,
        (processors.clone(), users, acls),
        crate::http::MetricsSources {
            broker: context.clone(),
            processors,
            started,
            config: config.metrics.clone(),
        },
        auth,
        stopped.clone(),
    ));
    spawn_periodic(&mut tasks, &config, &store, &groups, &stopped);
    let checked = transactions.clone();
    tasks.spawn(every(
        config.transactions.abort_check_interval_ms,
        "transaction timeouts",
        stopped.clone(),
        move || checked.tick(),
    ));
    // Ready only now: the log, the committed offsets, the processors and
    // both listeners are all serving, so whoever waits for this line can
    // rely on every API (and a failure to open any of them is reported
    // instead of a ready line).
    tracing::info!(kafka = %bound.kafka, http = %bound.http, data_dir = %config.data_dir.display(),
        startup_ms = started.elapsed().as_millis() as u64, "sluice is ready");
    on_ready(bound);

    shutdown.await;
    tracing::info!("shutting down: no new connections, finishing in-flight work");
    let _ = stop.send(true);
    drain(tasks).await;
    let store_for_close = store.clone();
    tokio::task::spawn_blocking(move || store_for_close.close()).await??;
    tracing::info!("stopped; data directory released");
    Ok(())
}

/// Opens (and recovers) the log store, off the async workers.
async fn open_store(config: &Config) -> anyhow::Result<Arc<LogStore>> {
    let data_dir = config.data_dir.clone();
    let options = config.log.store_options();
    let store = tokio::task::spawn_blocking(move || {
        LogStore::open(&data_dir, options, Arc::new(StdIo), Arc::new(SystemClock))
    })
    .await?
    .with_context(|| format!("opening data directory {}", config.data_dir.display()))?;
    Ok(Arc::new(store))
}

/// The TLS settings of the Kafka listener (under `SSL` and `SASL_SSL`)
/// and of the admin API (when it has a certificate), read and checked.
fn open_tls(config: &Config) -> anyhow::Result<(Option<crate::tls::Tls>, Option<crate::tls::Tls>)> {
    let kafka = &config.kafka;
    let protocol = kafka.security_protocol.name();
    let kafka_tls = match (
        kafka.security_protocol.tls(),
        &kafka.tls_cert_file,
        &kafka.tls_key_file,
    ) {
        (true, Some(cert), Some(key)) => Some(
            crate::tls::Tls::open(
                cert,
                key,
                &[],
                kafka.tls_handshake_timeout_ms,
                "kafka.tls_handshake_timeout_ms",
            )
            .with_context(|| format!("[kafka] security_protocol = {protocol:?}"))?,
        ),
        (true, _, _) => anyhow::bail!(
            "[kafka] security_protocol = {protocol:?} needs tls_cert_file and tls_key_file"
        ),
        (false, None, None) => None,
        (false, _, _) => anyhow::bail!(
            "[kafka] tls_cert_file and tls_key_file are for security_protocol \"SSL\" or \
             \"SASL_SSL\", not {protocol:?}"
        ),
    };
    let admin = &config.admin;
    let admin_tls = match (&admin.tls_cert_file, &admin.tls_key_file) {
        (Some(cert), Some(key)) => Some(
            crate::tls::Tls::open(
                cert,
                key,
                &[b"http/1.1"],
                admin.tls_handshake_timeout_ms,
                "admin.tls_handshake_timeout_ms",
            )
            .context("[admin] HTTPS")?,
        ),
        (None, None) => None,
        _ => anyhow::bail!("[admin] tls_cert_file and tls_key_file go together"),
    };
    Ok((kafka_tls, admin_tls))
}

/// Binds the Kafka and HTTP listeners: on loopback only, unless the
/// listener authenticates its clients over the network or the operator
/// accepts the risk with `--insecure`. The Kafka listener authenticates
/// under `SASL_SSL` and `SASL_PLAINTEXT` (whose SCRAM never sends the
/// password; PLAIN does, in clear, so prefer `SASL_SSL` for it), not under
/// `PLAINTEXT` or `SSL` (encrypted, but anyone may connect). The admin API
/// always checks its token, which crosses the network safely only over
/// HTTPS.
async fn bind(config: &Config, admin_https: bool) -> anyhow::Result<(TcpListener, TcpListener)> {
    let protocol = config.kafka.security_protocol;
    let refusal = [
        (
            config.listen,
            !protocol.sasl(),
            format!(
                "Kafka listener: security_protocol {:?} authenticates nobody; use SASL_SSL or \
             SASL_PLAINTEXT",
                protocol.name()
            ),
        ),
        (
            config.http,
            !admin_https,
            "admin API: its token would cross the network in clear \
             text; set [admin] tls_cert_file and tls_key_file for HTTPS"
                .to_string(),
        ),
    ];
    for (address, unsafe_there, why) in refusal {
        if !address.ip().is_loopback() && unsafe_there && !config.insecure {
            anyhow::bail!(
                "refusing to listen on {address} ({why}); only loopback addresses are safe \
                 for it as configured; pass --insecure (or insecure = true) to listen there \
                 anyway"
            );
        }
    }
    let kafka = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the Kafka listener on {}", config.listen))?;
    let http = TcpListener::bind(config.http)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", config.http))?;
    Ok((kafka, http))
}

/// Opens the committed-offsets store and the group coordinator over it.
async fn open_groups(config: &Config) -> anyhow::Result<Arc<GroupCoordinator>> {
    let offsets_dir = config.data_dir.join("groups");
    let offsets =
        tokio::task::spawn_blocking(move || OffsetStore::open(Arc::new(StdIo), &offsets_dir))
            .await?
            .context("opening the committed-offsets store")?;
    Ok(Arc::new(GroupCoordinator::new(
        config.groups.clone(),
        Arc::new(SystemClock),
        offsets,
    )))
}

/// Opens processor state (`<data-dir>/state`, RocksDB) and reads which
/// producer ids its tasks own: their open transactions are theirs to end.
async fn open_state(
    config: &Config,
) -> anyhow::Result<(Arc<crate::state::StateDb>, std::collections::HashSet<i64>)> {
    let (dir, settings) = (config.data_dir.join("state"), config.state.clone());
    tokio::task::spawn_blocking(move || {
        let state = crate::state::StateDb::open(&dir, &settings)
            .with_context(|| format!("opening processor state in {}", dir.display()))?;
        let owned = crate::processor::stateful::owned_producer_ids(&state)
            .map_err(anyhow::Error::msg)
            .context("reading processor commit records")?;
        Ok((state, owned))
    })
    .await?
}

/// Opens the transaction coordinator (its log, the producer id allocator)
/// and finishes the transactions a crash left half-ended; after the log
/// store, whose partitions get the markers. The transactions of `owned`
/// producers (processors') are left to their tasks.
async fn open_transactions(
    config: &Config,
    store: &Arc<LogStore>,
    groups: &Arc<GroupCoordinator>,
    owned: std::collections::HashSet<i64>,
) -> anyhow::Result<Arc<TransactionCoordinator>> {
    let (settings, data_dir) = (config.transactions.clone(), config.data_dir.clone());
    let (store, groups) = (store.clone(), groups.clone());
    let coordinator = tokio::task::spawn_blocking(move || {
        TransactionCoordinator::open(
            settings,
            Arc::new(SystemClock),
            Arc::new(StdIo),
            &data_dir,
            store,
            groups,
            owned,
        )
    })
    .await?
    .context("opening the transaction coordinator")?;
    Ok(Arc::new(coordinator))
}

/// What every Kafka request handler shares.
fn broker_context(
    config: &Config,
    bound: Bound,
    store: &Arc<LogStore>,
    groups: &Arc<GroupCoordinator>,
    transactions: &Arc<TransactionCoordinator>,
    stopped: &Shutdown,
    (users, authorizer): (
        &Arc<crate::server::sasl::Users>,
        &Arc<crate::acl::Authorizer>,
    ),
) -> anyhow::Result<Arc<BrokerContext>> {
    let sasl = crate::server::sasl::Sasl::new(
        config.kafka.security_protocol,
        &config.kafka.sasl_mechanisms,
        users.clone(),
    )?;
    Ok(Arc::new(BrokerContext {
        store: store.clone(),
        config: config.kafka.clone(),
        advertised: advertised(config.kafka.advertised_listener, bound.kafka),
        cluster_id: cluster_id(&config.data_dir)?,
        groups: groups.clone(),
        transactions: transactions.clone(),
        request_bytes: crate::server::RequestBudget::new(
            config
                .kafka
                .queued_request_bytes_max
                .max(config.kafka.frame_bytes_max) as usize,
        ),
        // At least one whole response (and so any batch a fetch may
        // return), or a batch larger than the budget would never be served.
        fetch_bytes: Arc::new(tokio::sync::Semaphore::new(
            config
                .kafka
                .queued_fetch_bytes_max
                .max(config.kafka.fetch_bytes_max)
                .max(u32::try_from(config.log.topic_defaults.max_message_bytes).unwrap_or(u32::MAX))
                as usize,
        )),
        shutdown: stopped.clone(),
        sasl: Arc::new(sasl),
        authorizer: authorizer.clone(),
    }))
}

/// The periodic work: group session and rebalance timeouts, retention and
/// compaction, and the interval flush when that is the policy.
fn spawn_periodic(
    tasks: &mut JoinSet<()>,
    config: &Config,
    store: &Arc<LogStore>,
    groups: &Arc<GroupCoordinator>,
    stopped: &Shutdown,
) {
    let ticking = groups.clone();
    tasks.spawn(every(100, "group timeouts", stopped.clone(), move || {
        ticking.tick()
    }));
    let compacted = groups.clone();
    tasks.spawn(every(
        1000,
        "committed-offsets compaction",
        stopped.clone(),
        move || compacted.compact_offsets(),
    ));
    let maintained = store.clone();
    tasks.spawn(every(
        config.log.retention_check_interval_ms,
        "retention and compaction",
        stopped.clone(),
        move || maintained.run_maintenance(),
    ));
    tasks.spawn(every(
        crate::memory::RETURN_INTERVAL_MS,
        "returning freed memory",
        stopped.clone(),
        crate::memory::return_freed,
    ));
    if let FlushPolicy::Interval { interval_ms } = config.log.flush {
        let flushed = store.clone();
        tasks.spawn(every(
            interval_ms,
            "interval flush",
            stopped.clone(),
            move || flushed.flush_all(),
        ));
    }
}

/// Waits for every task to finish after the shutdown signal, at most
/// [`SHUTDOWN_GRACE`]; then aborts what is left.
async fn drain(mut tasks: JoinSet<()>) {
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(result) = tasks.join_next().await {
            if let Err(error) = result {
                tracing::error!(%error, "task failed during shutdown");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("in-flight work did not finish within the grace period; closing anyway");
        tasks.abort_all();
    }
}

/// The address clients are told to use: the configured one, else the bound
/// listener (with a wildcard address replaced by loopback, which is at
/// least reachable from this machine).
fn advertised(configured: Option<SocketAddr>, bound: SocketAddr) -> SocketAddr {
    configured.unwrap_or_else(|| {
        if bound.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], bound.port()))
        } else {
            bound
        }
    })
}

/// The cluster id, made on first start and kept in `<data-dir>/cluster_id`.
fn cluster_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("cluster_id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        return Ok(id.trim().to_string());
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    io::write_atomic(&StdIo, &path, id.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// Runs blocking `work` every `interval_ms` (first after one interval), off
/// the async workers, until shutdown.
async fn every(
    interval_ms: u64,
    what: &'static str,
    mut shutdown: Shutdown,
    work: impl Fn() + Clone + Send + 'static,
) {
    let period = Duration::from_millis(interval_ms.max(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        if let Err(error) = tokio::task::spawn_blocking(work.clone()).await {
            tracing::error!(%error, task = what, "periodic task failed");
        }
    }
}
