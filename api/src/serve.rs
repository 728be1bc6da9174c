//! `consign serve`: the long-running HTTP server on the embedded ledger.
//!
//! It opens the data directory (taking its lock), listens on the configured address,
//! and stops gracefully on SIGTERM or Ctrl-C: it stops accepting connections, lets the
//! requests in flight finish, and closes the ledger after the queued appends.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use consign_ledger::{EmbeddedLedger, EmbeddedOptions};
use serde_json::json;

use crate::cli::DataDirArgs;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataDirArgs,

    /// Address and port to listen on.
    #[arg(long, env = "CONSIGN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

/// State shared by every request handler.
#[derive(Debug, Clone)]
struct AppState {
    ledger: Arc<EmbeddedLedger>,
}

/// Runs the server until SIGTERM or Ctrl-C.
///
/// # Errors
///
/// The ledger cannot be opened or the address cannot be bound.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let ledger = EmbeddedLedger::open(&args.data.data_dir, EmbeddedOptions::default())
        .with_context(|| format!("cannot open the ledger in {}", args.data.data_dir.display()))?;
    let state = AppState {
        ledger: Arc::new(ledger),
    };

    let app = Router::new()
        .route("/healthz", get(health))
        .with_state(state.clone());

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; choose another --listen address",
                args.listen
            )
        })?;
    tracing::info!(listen = %args.listen, data_dir = %args.data.data_dir.display(), "consign serving");

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("HTTP server failed")?;

    tracing::info!("consign stopped accepting requests; closing the ledger");
    drop(state);
    Ok(())
}

/// Returns the heads of every chain, so an operator or a load balancer can check that
/// the ledger is open.
async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    let chains: Vec<_> = state
        .ledger
        .chains()
        .map(|chain| {
            json!({
                "chain": chain,
                "next_position": state.ledger.next_position(chain).ok(),
                "last_hash": state.ledger.last_hash(chain).ok(),
            })
        })
        .collect();
    Json(json!({ "status": "ok", "chains": chains }))
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}
