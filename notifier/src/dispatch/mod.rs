//! The notification dispatcher: the loop that turns ledger events into e-mails.
//!
//! [`DispatchState`] folds every chain into what sending needs and lists the work due
//! at a given time ([`DispatchState::due`]). [`Dispatcher::run`] folds the ledger,
//! follows it, and performs that work:
//!
//! 1. A released delivery's recipient without a link e-mail, or a first download of a
//!    delivery with receipts requested, gets a `NotificationAttempted` event with a new
//!    notification id and Message-ID. Its idempotency key names the delivery,
//!    recipient and kind, so no restart or second dispatcher records a second first
//!    attempt.
//! 2. Once the fold has seen an attempt without an outcome, the e-mail is composed and
//!    sent, and the outcome recorded: `NotificationSent` (with `ReceiptSent` in the
//!    same append for a receipt), `NotificationDeferred` with a `retry_at` from
//!    [`crate::retry_delay`], or `NotificationFailed`. The same path resends after a
//!    crash between attempt and outcome, under the same notification id, Message-ID
//!    and attempt number.
//! 3. When `retry_at` comes, the next attempt is recorded under the same notification
//!    id and Message-ID, and step 2 sends it.
//!
//! A transient failure becomes `NotificationFailed` instead of a deferral when the
//! next retry would come after the delivery's expiry, or, without an expiry, after the
//! give-up period. Withdrawn or expired deliveries get no new link e-mail attempts, but
//! a receipt for a download is still sent after the delivery closed.

mod due;
mod notice;
mod run;
mod state;
mod work;

#[cfg(test)]
mod tests;

use consign_ledger::LedgerError;
use consign_schemas::{ChainId, DeliveryId, RecipientId};

pub use due::{Due, DueWork};
pub use run::{DEFAULT_GIVE_UP_AFTER, DEFAULT_MAX_CONCURRENT_SENDS, Dispatcher, DispatcherConfig};
pub use state::{DispatchState, NotificationRecord, NotificationStatus};

/// Errors that stop [`Dispatcher::run`].
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("failed to read chain {chain} of the ledger: {source}")]
    Read {
        chain: ChainId,
        #[source]
        source: LedgerError,
    },

    #[error("failed to follow the ledger: {source}")]
    Follow {
        #[source]
        source: LedgerError,
    },

    #[error(
        "failed to append {event} for delivery {delivery}, recipient {recipient}: {source}; \
         restart the notifier once the ledger accepts appends again, and it resumes every \
         unfinished notification from the ledger"
    )]
    Append {
        /// Type name of the first event of the failed append.
        event: &'static str,
        delivery: DeliveryId,
        recipient: RecipientId,
        #[source]
        source: LedgerError,
    },

    #[error("a notification task failed: {reason}; this is a bug in the notifier")]
    Task { reason: String },
}
