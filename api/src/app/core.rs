//! The state every handler shares: the ledger, the model folded from it, the document
//! store and the keys.
//!
//! Commands append to the ledger and then wait until the model has applied their
//! events, so the response and every later read see them. One follower task per chain
//! applies new events to the model in position order.

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use consign_ledger::postmark::PostmarkKeys;
use consign_ledger::{AppendRequest, Appended, Clock, EmbeddedLedger, LedgerError};
use consign_notifier::LinkKey;
use consign_projections::ViewStore;
use consign_projections::billing::RateTable;
use consign_projections::model::Model;
use consign_schemas::{ChainId, DeliveryId, Position};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use super::limits::{Limits, Transport};
use super::recipient::{Coverage, Grants};
use super::sessions::Sessions;
use crate::blobs::{BlobStore, KeyEncryptionKey};
use crate::web::throttle::{Throttle, ThrottleConfig};

/// Maximum time a command waits for the model to apply its own events.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared server state.
#[derive(Debug)]
pub struct Core {
    pub ledger: Arc<EmbeddedLedger>,
    model: RwLock<Model>,
    /// Bumped after every applied event, so waiters re-check the model.
    applied: watch::Sender<u64>,
    pub blobs: BlobStore,
    pub kek: KeyEncryptionKey,
    pub links: LinkKey,
    pub clock: Clock,
    pub limits: Limits,
    pub transport: Transport,
    /// The persisted views, kept live by a follower task of the server.
    pub views: Arc<ViewStore>,
    /// Prices for billing exports, if configured.
    pub rates: Option<RateTable>,
    pub postmark_keys: PostmarkKeys,
    pub sessions: Sessions,
    pub(crate) throttle: Throttle,
    pub(crate) grants: Grants,
    /// The byte ranges of documents that recipients fetched in pieces.
    pub(crate) coverage: Coverage,
    /// Set when the server runs behind HTTPS, so cookies carry `Secure`.
    pub secure_cookies: bool,
    /// Cancelled when a follower stops on an error: the model no longer follows the
    /// ledger, so the server must stop rather than serve reads from stale state.
    pub failed: CancellationToken,
    /// The error that stopped the first follower to stop, set before `failed`.
    failure: std::sync::OnceLock<String>,
    /// The follower tasks, stopped when the state is dropped so that they release the
    /// ledger's database.
    followers: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for Core {
    fn drop(&mut self) {
        let followers = self
            .followers
            .get_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        for follower in followers {
            follower.abort();
        }
    }
}

/// Everything [`Core::new`] needs besides the model.
#[derive(Debug)]
pub struct CoreParts {
    pub ledger: Arc<EmbeddedLedger>,
    pub blobs: BlobStore,
    pub kek: KeyEncryptionKey,
    pub links: LinkKey,
    pub clock: Clock,
    pub limits: Limits,
    pub secure_cookies: bool,
    pub transport: Transport,
    pub views: Arc<ViewStore>,
    pub rates: Option<RateTable>,
    pub postmark_keys: PostmarkKeys,
}

impl Core {
    /// Builds the state, reads every chain into the model, and starts one follower task
    /// per chain that applies later events.
    ///
    /// # Errors
    ///
    /// The ledger cannot be read, or its events do not apply in order.
    pub async fn start(parts: CoreParts) -> Result<Arc<Self>, LedgerError> {
        let (applied, _) = watch::channel(0);
        let core = Arc::new(Self {
            ledger: parts.ledger,
            model: RwLock::new(Model::new()),
            applied,
            blobs: parts.blobs,
            kek: parts.kek,
            links: parts.links,
            clock: parts.clock,
            limits: parts.limits,
            transport: parts.transport,
            views: parts.views,
            rates: parts.rates,
            postmark_keys: parts.postmark_keys,
            sessions: Sessions::default(),
            throttle: Throttle::new(ThrottleConfig::default()),
            grants: Grants::default(),
            coverage: Coverage::default(),
            secure_cookies: parts.secure_cookies,
            failed: CancellationToken::new(),
            failure: std::sync::OnceLock::new(),
            followers: std::sync::Mutex::new(Vec::new()),
        });

        let heads: Vec<(ChainId, Position)> = core
            .ledger
            .chains()
            .map(|chain| Ok((chain, core.ledger.next_position(chain)?)))
            .collect::<Result<_, LedgerError>>()?;
        for chain in core.ledger.chains() {
            let subscription = core.ledger.subscribe(chain, Position::new(0))?;
            let follower = tokio::spawn(follow(Arc::downgrade(&core), subscription));
            core.followers
                .lock()
                .expect("the follower list lock is never poisoned")
                .push(follower.abort_handle());
        }
        // A large ledger takes a while to fold, so this waits as long as the followers
        // make progress, and fails after 30 s without any (a follower that stops logs why).
        let mut changes = core.applied.subscribe();
        for (chain, head) in heads {
            while core.model().next_position(chain) < head {
                let progressed = tokio::select! {
                    progressed = tokio::time::timeout(APPLY_TIMEOUT, changes.changed()) => {
                        matches!(progressed, Ok(Ok(())))
                    }
                    () = core.failed.cancelled() => false,
                };
                if !progressed {
                    let cause = core
                        .failure
                        .get()
                        .map_or_else(String::new, |failure| format!(": {failure}"));
                    return Err(LedgerError::Corrupt {
                        dir: core.ledger.dir().to_path_buf(),
                        reason: format!(
                            "the model stopped at {chain}:{} before the head {head}{cause}",
                            core.model().next_position(chain)
                        ),
                    });
                }
            }
        }
        tracing::info!(
            chains = core.ledger.chain_count(),
            "model folded from the ledger"
        );
        Ok(core)
    }

    /// Records why a follower stopped, if it is the first, and cancels `failed`. A
    /// corrupt ledger is recorded by its reason alone, because the start wraps it in a
    /// corruption error of its own.
    fn stop_following(&self, error: &dyn std::fmt::Display, corrupt_reason: Option<&str>) {
        let reason = corrupt_reason.map_or_else(|| error.to_string(), str::to_owned);
        let _ = self.failure.set(reason);
        self.failed.cancel();
    }

    /// Reads the model.
    pub fn model(&self) -> RwLockReadGuard<'_, Model> {
        self.model.read().expect("the model lock is never poisoned")
    }

    /// Returns the chain that stores a delivery's events.
    pub fn chain_of(&self, delivery: DeliveryId) -> ChainId {
        consign_ledger::workload::chain_for_delivery(delivery, self.ledger.chain_count())
    }

    /// Appends durably and waits until the model has applied the appended events.
    ///
    /// # Errors
    ///
    /// [`ApiError::Unavailable`] when the ledger cannot write, and an internal error if
    /// the model does not catch up in time.
    pub async fn append(&self, request: AppendRequest) -> Result<Appended, ApiError> {
        let appended = self.ledger.append(request).await?;
        if let Some(last) = appended.events.last() {
            self.wait_applied(appended.chain, last.position).await?;
        }
        Ok(appended)
    }

    /// Waits until the model has applied `position` of `chain`.
    ///
    /// # Errors
    ///
    /// [`ApiError::Internal`] after 30 seconds.
    pub async fn wait_applied(&self, chain: ChainId, position: Position) -> Result<(), ApiError> {
        let mut changes = self.applied.subscribe();
        let wait = async {
            while self.model().next_position(chain) <= position {
                if changes.changed().await.is_err() {
                    break;
                }
            }
        };
        tokio::time::timeout(APPLY_TIMEOUT, wait)
            .await
            .map_err(|_| ApiError::Internal {
                message: format!(
                    "the model did not apply {chain}:{position} within {APPLY_TIMEOUT:?}"
                ),
            })
    }
}

/// Applies one chain's events to the model until the ledger or the server closes.
async fn follow(core: std::sync::Weak<Core>, mut subscription: consign_ledger::Subscription) {
    loop {
        let event = match subscription.next().await {
            Ok(event) => event,
            Err(LedgerError::Closed) => return,
            Err(error) => {
                tracing::error!(%error, "the model stopped following a chain");
                if let Some(core) = core.upgrade() {
                    let reason = match &error {
                        LedgerError::Corrupt { reason, .. } => Some(reason.as_str()),
                        _ => None,
                    };
                    core.stop_following(&error, reason);
                }
                return;
            }
        };
        let Some(core) = core.upgrade() else {
            return;
        };
        let applied = core
            .model
            .write()
            .expect("the model lock is never poisoned")
            .apply(&event);
        if let Err(error) = applied {
            tracing::error!(%error, "the model stopped following a chain");
            core.stop_following(&error, None);
            return;
        }
        core.applied.send_modify(|count| *count += 1);
    }
}
