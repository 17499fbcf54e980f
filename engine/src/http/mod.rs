//! The HTTP admin listener. `GET /health` answers
//! `{"status":"ok","version":"…","uptime_ms":…,"data_dir":"…"}` to anyone;
//! `GET /metrics` (`metrics`) to any caller naming this broker's host, not
//! cross-site; the web console's page at `/` (`console`) to anyone; the
//! processor API (`processors`, `state`), the SASL users (`users`), the
//! ACLs (`acls`) and the topics and groups (`browse`) only to holders of
//! the broker's token (`auth`). Over HTTPS when `[admin] tls_cert_file`
//! and `tls_key_file` are set (`https`).

mod acls;
mod auth;
mod browse;
mod console;
mod https;
mod metrics;
pub(crate) mod processors;
mod state;
mod users;

use std::future::IntoFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;
pub(crate) use auth::{AdminAuth, AdminConfig, TOKEN_FILE};
pub(crate) use browse::Browse;
pub(crate) use metrics::{MetricsConfig, Sources as MetricsSources};

/// What `/health` reports.
#[derive(Debug, Clone)]
pub(crate) struct HealthInfo {
    started: Instant,
    data_dir: PathBuf,
}

impl HealthInfo {
    /// Health of a broker started at `started` on `data_dir`.
    pub(crate) fn new(started: Instant, data_dir: &Path) -> Self {
        let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        Self { started, data_dir }
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    uptime_ms: u64,
    data_dir: String,
}

async fn health(State(info): State<Arc<HealthInfo>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_ms: info.started.elapsed().as_millis() as u64,
        data_dir: info.data_dir.display().to_string(),
    })
}

/// Serves the admin API until shutdown; over HTTPS with `tls`.
pub(crate) async fn serve(
    (listener, tls): (TcpListener, Option<crate::tls::Tls>),
    info: HealthInfo,
    (processors, users, acls): (
        Arc<crate::processor::Processors>,
        Arc<crate::server::sasl::Users>,
        Arc<crate::acl::Authorizer>,
    ),
    metrics: MetricsSources,
    auth: AdminAuth,
    shutdown: Shutdown,
) {
    let app = Router::new()
        .route("/health", get(health))
        .with_state(Arc::new(info))
        .merge(state::routes(processors.clone()))
        .merge(processors::routes(processors))
        .merge(users::routes(users))
        .merge(acls::routes(acls))
        .merge(browse::routes(Arc::new(Browse {
            broker: metrics.broker.clone(),
            started: metrics.started,
        })))
        .merge(metrics::routes(metrics))
        .merge(console::routes())
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(auth),
            auth::guard,
        ));
    let mut stopped = shutdown.clone();
    let stopping = async move {
        let _ = stopped.changed().await;
    };
    let served = match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopping)
                .await
        }
        Some(tls) => match https::listen(listener, tls, shutdown) {
            Ok((listener, accepting)) => {
                let serving = axum::serve(listener, app).with_graceful_shutdown(stopping);
                tokio::join!(serving.into_future(), accepting).0
            }
            Err(error) => Err(error),
        },
    };
    if let Err(error) = served {
        tracing::error!(%error, "HTTP listener failed");
    }
}
