//! The notifier of consign: turns delivery events into e-mails and sends them.
//!
//! This crate contains the e-mail side. [`Composer`] builds the consignment e-mail that
//! brings a recipient the private link and the receipt e-mail that informs a sender of
//! a download. [`Mailer`] sends either one over SMTP ([`SmtpConfig`], parsed from an
//! `smtp://` or `smtps://` URL) or writes it to an outbox directory, and classifies the
//! result as a [`SendOutcome`]. [`retry_delay`] spaces the retries of transient
//! failures.
//!
//! The notifier changes nothing directly. [`Dispatcher`] follows the ledger, records a
//! `NotificationAttempted` event with the Message-ID from [`new_message_id`] before
//! sending, and the outcome as `NotificationSent`, `NotificationDeferred` or
//! `NotificationFailed` after, so a retry reuses the notification id and the
//! Message-ID.
//!
//! No access password is ever part of an e-mail: [`ConsignmentNotice`] has no field
//! for one, only a flag saying that one is required.

mod body;
mod compose;
mod dispatch;
mod links;
mod mailbox;
mod mailer;
mod message_id;
mod outbox;
mod retry;
mod smtp_url;
mod text;

pub use text::is_bidi_control;

pub use compose::{
    AccessToken, ComposeError, Composer, ComposerConfig, ConsignmentNotice, DocumentEntry,
    OutgoingEmail, ReceiptNotice,
};
pub use dispatch::{
    DEFAULT_GIVE_UP_AFTER, DEFAULT_MAX_CONCURRENT_SENDS, DispatchError, DispatchState, Dispatcher,
    DispatcherConfig, Due, DueWork, NotificationRecord, NotificationStatus,
};
pub use links::{LinkKey, LinkKeyError, token_hash};
pub use mailbox::check_mailbox;
pub use mailer::{Mailer, MailerError, SendOutcome};
pub use message_id::{MessageIdDomain, new_message_id};
pub use retry::{FIRST_RETRY_DELAY, MAX_RETRY_DELAY, retry_delay};
pub use smtp_url::{ParseSmtpUrlError, SmtpConfig, SmtpCredentials, SmtpSecurity};
