//! HTTP front-end for Junction.
//!
//! Today it serves the NATS-style monitoring endpoints (`/healthz`, `/varz`,
//! `/connz`) on the main HTTP listener and on the nats-server compatible monitoring
//! port (`-m`). The REST API, WebSocket gateway, metrics and GUI come later and will
//! live here too.
//!
//! What it is not: it reads the broker only through [`junction_api::Engine`]; it
//! never reaches into the engine, storage or cluster.

mod monitor;
mod process;

pub use monitor::{MonitorSettings, monitor_router};

use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
