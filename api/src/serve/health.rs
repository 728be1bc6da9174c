//! `GET /healthz`: the heads of every chain and, on Kafka, which chains this server
//! sequences, so an operator or a load balancer can check that the ledger is open and
//! which appends this server takes.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use consign_ledger::kafka::KafkaStatus;
use serde_json::{Value, json};

use crate::app::Core;

/// State of the health route.
#[derive(Clone)]
pub(super) struct Health {
    pub(super) core: Arc<Core>,
    /// The sequencers of this process, when the ledger is on Kafka.
    pub(super) kafka: Option<KafkaStatus>,
}

/// Returns the heads of every chain and, on Kafka, the chains whose sequencer in this
/// process takes appends (`ready`) and those another process fenced (`fenced`, with
/// the reason). After a failed ledger write, which stops every append until a restart,
/// the status is `failed` with the reason, and the response status 503.
pub(super) async fn health(State(health): State<Health>) -> (StatusCode, Json<Value>) {
    let ledger = &health.core.ledger;
    let chains: Vec<_> = ledger
        .chains()
        .map(|chain| {
            json!({
                "chain": chain,
                "next_position": ledger.next_position(chain).ok(),
                "last_hash": ledger.last_hash(chain).ok(),
            })
        })
        .collect();
    let failure = ledger.write_failure();
    let status = if failure.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let mut body = json!({ "status": "ok", "chains": chains });
    if let Some(reason) = failure {
        body["status"] = json!("failed");
        body["reason"] = json!(format!(
            "a ledger write failed ({reason}); appends are rejected until consign is \
             restarted, once the cause (such as a full disk) is fixed"
        ));
    }
    if let Some(kafka) = &health.kafka {
        let fenced: Vec<Value> = kafka
            .fenced_chains()
            .into_iter()
            .map(|(chain, reason)| json!({ "chain": chain, "reason": reason }))
            .collect();
        body["kafka"] = json!({ "ready": kafka.ready_chains(), "fenced": fenced });
    }
    (status, Json(body))
}
