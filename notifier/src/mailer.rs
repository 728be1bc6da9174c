//! The [`Mailer`]: hands a composed e-mail to an SMTP relay or writes it to the outbox
//! directory, and classifies the outcome as sent, transient or permanent.
//!
//! The mailer owns only its transport settings. It records nothing: the caller records
//! the attempt before [`Mailer::send`] and the returned outcome after it.

use std::error::Error as _;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::response::Response;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::compose::OutgoingEmail;
use crate::outbox::{outbox_file_name, write_message};
use crate::smtp_url::{SmtpConfig, SmtpSecurity};

/// SMTP reply codes that RFC 4954 defines for authentication. They come from the
/// relay's configuration, not from the recipient, so they count as transient although
/// 530, 534, 535 and 538 are 5xx codes: the e-mail can go out once the operator fixes
/// the credentials.
const AUTHENTICATION_CODES: [u16; 5] = [454, 530, 534, 535, 538];

/// Errors of setting up a [`Mailer`].
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("invalid TLS settings for SMTP host {host:?}: {source}")]
    Tls {
        host: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },

    #[error("failed to create outbox directory {path:?}: {source}")]
    CreateOutbox {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Outcome of one send.
///
/// A failed send hands the e-mail back, so it can be retried or dead-lettered without
/// being composed again.
#[must_use = "the outcome must be recorded, and a failed e-mail retried or dropped"]
#[derive(Debug)]
pub enum SendOutcome {
    /// The relay accepted the message, or the outbox file is in place.
    Sent {
        /// The relay's final reply, such as `250 2.0.0 Ok: queued as 4F2A`, or the
        /// outbox file name.
        server_reply: String,
    },
    /// Worth retrying later: a 4xx reply, a refused, dropped or timed-out connection, a
    /// TLS failure, an authentication failure or an outbox write error.
    Transient {
        reason: String,
        email: OutgoingEmail,
    },
    /// Retrying the same message will not help: a 5xx reply other than an
    /// authentication failure.
    Permanent {
        reason: String,
        email: OutgoingEmail,
    },
}

impl SendOutcome {
    /// Returns the handed-back e-mail of a failed send, or `None` if it was sent.
    pub fn into_email(self) -> Option<OutgoingEmail> {
        match self {
            SendOutcome::Sent { .. } => None,
            SendOutcome::Transient { email, .. } | SendOutcome::Permanent { email, .. } => {
                Some(email)
            }
        }
    }
}

/// Sends composed e-mails over SMTP or writes them to an outbox directory.
pub struct Mailer {
    kind: MailerKind,
}

enum MailerKind {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// The relay URL without its password, for logs and `Debug`.
        endpoint: String,
        /// Limit on one whole send. lettre 0.11's tokio transport only applies its own
        /// timeout to the TCP connect, so a relay that accepts the connection and then
        /// stays silent would otherwise hold a send forever.
        timeout: Duration,
    },
    Outbox {
        dir: PathBuf,
    },
}

impl Mailer {
    /// Builds a mailer that sends through the SMTP relay of `config`.
    ///
    /// No connection is made here. Each send opens its own connection (no pool), sends
    /// EHLO with this machine's host name, upgrades or wraps it in TLS as `config`
    /// requires, authenticates if credentials are set, and closes it afterwards.
    ///
    /// # Errors
    ///
    /// [`MailerError::Tls`] if rustls cannot be set up for the host name.
    pub fn smtp(config: &SmtpConfig) -> Result<Self, MailerError> {
        let tls_parameters = || {
            TlsParameters::new(config.host.clone()).map_err(|source| MailerError::Tls {
                host: config.host.clone(),
                source,
            })
        };
        let tls = match config.security {
            SmtpSecurity::Plain => Tls::None,
            SmtpSecurity::StartTls => Tls::Required(tls_parameters()?),
            SmtpSecurity::ImplicitTls => Tls::Wrapper(tls_parameters()?),
        };

        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .tls(tls)
            .timeout(Some(config.timeout));
        if let Some(credentials) = &config.credentials {
            if config.security == SmtpSecurity::Plain && !is_loopback(&config.host) {
                tracing::warn!(
                    smtp.url = %config,
                    "SMTP credentials will cross the network unencrypted; use smtps:// or tls=starttls"
                );
            }
            builder = builder.credentials(Credentials::new(
                credentials.user().to_owned(),
                credentials.password().to_owned(),
            ));
        }

        tracing::info!(smtp.url = %config, "SMTP mailer configured");
        Ok(Self {
            kind: MailerKind::Smtp {
                transport: builder.build(),
                endpoint: config.to_string(),
                timeout: config.timeout,
            },
        })
    }

    /// Builds a mailer that writes each e-mail to `{dir}/{notification_id}.eml`,
    /// creating the directory if it does not exist.
    ///
    /// # Errors
    ///
    /// [`MailerError::CreateOutbox`] if the directory cannot be created, or the path
    /// exists and is not a directory.
    pub fn outbox(dir: impl Into<PathBuf>) -> Result<Self, MailerError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| MailerError::CreateOutbox {
            path: dir.clone(),
            source,
        })?;

        tracing::info!(outbox.dir = %dir.display(), "outbox mailer configured");
        Ok(Self {
            kind: MailerKind::Outbox { dir },
        })
    }

    /// Sends one e-mail and classifies the outcome.
    ///
    /// Over SMTP, [`SendOutcome::Sent`] carries the relay's reply to DATA. A 5xx reply
    /// gives [`SendOutcome::Permanent`], except the authentication codes of RFC 4954.
    /// Everything else that fails gives [`SendOutcome::Transient`]: 4xx replies,
    /// connection refused or dropped, the send exceeding the configured timeout, TLS
    /// and authentication failures, and replies lettre cannot parse. Into the outbox,
    /// [`SendOutcome::Sent`] carries the file name and any write error is transient.
    ///
    /// Failures are logged at warn level with the notification id and the reason.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe. Dropping the future drops the e-mail and may leave the relay
    /// with or without the message. The caller recorded the attempt beforehand, so it
    /// can compose the e-mail again with the same Message-ID, and the receiving side can
    /// drop the duplicate.
    pub async fn send(&self, email: OutgoingEmail) -> SendOutcome {
        let notification = email.notification();
        let outcome = match &self.kind {
            MailerKind::Smtp {
                transport, timeout, ..
            } => send_smtp(transport, *timeout, email).await,
            MailerKind::Outbox { dir } => send_to_outbox(dir, email).await,
        };

        match &outcome {
            SendOutcome::Sent { server_reply } => tracing::debug!(
                notification.id = %notification,
                smtp.reply = %server_reply,
                "e-mail sent"
            ),
            SendOutcome::Transient { reason, email } => tracing::warn!(
                notification.id = %notification,
                notification.message_id = %email.message_id(),
                reason = %reason,
                "e-mail deferred after a transient failure"
            ),
            SendOutcome::Permanent { reason, email } => tracing::warn!(
                notification.id = %notification,
                notification.message_id = %email.message_id(),
                reason = %reason,
                "e-mail failed permanently"
            ),
        }
        outcome
    }
}

impl Mailer {
    /// Returns the longest one send can take: the SMTP timeout, or for the outbox an
    /// estimate of a slow file write.
    pub fn send_timeout(&self) -> Duration {
        match &self.kind {
            MailerKind::Smtp { timeout, .. } => *timeout,
            MailerKind::Outbox { .. } => OUTBOX_WRITE_ESTIMATE,
        }
    }
}

/// An estimate of the longest time writing one `.eml` file takes, fsync included.
const OUTBOX_WRITE_ESTIMATE: Duration = Duration::from_secs(10);

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            MailerKind::Smtp {
                endpoint, timeout, ..
            } => f
                .debug_struct("Mailer::Smtp")
                .field("endpoint", endpoint)
                .field("timeout", timeout)
                .finish(),
            MailerKind::Outbox { dir } => {
                f.debug_struct("Mailer::Outbox").field("dir", dir).finish()
            }
        }
    }
}

async fn send_smtp(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
    email: OutgoingEmail,
) -> SendOutcome {
    // lettre 0.11 ends DATA with CRLF.CRLF even after a message that ends in CRLF, which
    // would add an empty line. Without the last CRLF the relay receives exactly the bytes
    // of `formatted`, the same bytes an outbox file contains.
    let formatted = email.formatted();
    let data = formatted.strip_suffix(b"\r\n").unwrap_or(formatted);
    let send = transport.send_raw(email.envelope(), data);

    match tokio::time::timeout(timeout, send).await {
        Ok(Ok(response)) => SendOutcome::Sent {
            server_reply: format_reply(&response),
        },
        Ok(Err(error)) => classify_smtp_error(&error, email),
        Err(_elapsed) => SendOutcome::Transient {
            reason: format!("SMTP send timed out after {} s", timeout.as_secs_f64()),
            email,
        },
    }
}

/// Sorts a lettre error into [`SendOutcome::Permanent`] or [`SendOutcome::Transient`]
/// and words the reason: the reply code and text for a negative reply, lettre's error
/// chain otherwise.
fn classify_smtp_error(
    error: &lettre::transport::smtp::Error,
    email: OutgoingEmail,
) -> SendOutcome {
    let Some(code) = error.status().map(u16::from) else {
        return SendOutcome::Transient {
            reason: error_chain(error),
            email,
        };
    };

    // For a negative reply, lettre's source error is the reply text.
    let reply_text = error.source().map(ToString::to_string).unwrap_or_default();
    let reply = format!("{code} {reply_text}").trim_end().to_owned();
    if AUTHENTICATION_CODES.contains(&code) {
        SendOutcome::Transient {
            reason: format!("SMTP authentication failed: {reply}"),
            email,
        }
    } else if error.is_permanent() {
        SendOutcome::Permanent {
            reason: reply,
            email,
        }
    } else {
        SendOutcome::Transient {
            reason: reply,
            email,
        }
    }
}

/// Writes an error and each of its sources that adds text, joined by `: `.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();

    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // lettre's Display already appends its direct source, so skip repeats.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Formats an SMTP reply on one line: the code, then the text lines joined by spaces.
fn format_reply(response: &Response) -> String {
    let lines: Vec<&str> = response.message().collect();
    format!("{} {}", response.code(), lines.join(" "))
        .trim_end()
        .to_owned()
}

async fn send_to_outbox(dir: &Path, email: OutgoingEmail) -> SendOutcome {
    let notification = email.notification();
    let formatted = email.formatted().to_vec();
    let write_dir = dir.to_path_buf();

    let written =
        tokio::task::spawn_blocking(move || write_message(&write_dir, notification, &formatted))
            .await;

    match written {
        Ok(Ok(path)) => {
            tracing::info!(
                notification.id = %notification,
                outbox.path = %path.display(),
                "e-mail written to outbox"
            );
            SendOutcome::Sent {
                server_reply: outbox_file_name(notification),
            }
        }
        Ok(Err(error)) => SendOutcome::Transient {
            reason: format!(
                "failed to write {:?} in outbox {:?}: {error}",
                outbox_file_name(notification),
                dir
            ),
            email,
        },
        Err(join_error) => SendOutcome::Transient {
            reason: format!("outbox writer task failed: {join_error}"),
            email,
        },
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("localhost"));
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("127.8.9.10"));
        assert!(is_loopback("::1"));
        assert!(!is_loopback("mail.example.com"));
        assert!(!is_loopback("192.0.2.1"));
    }

    #[test]
    fn format_reply_joins_lines() {
        use lettre::transport::smtp::response::{Category, Code, Detail, Severity};

        let code = Code::new(
            Severity::PositiveCompletion,
            Category::MailSystem,
            Detail::Zero,
        );
        let response = Response::new(
            code,
            vec!["2.0.0 Ok".to_owned(), "queued as 4F2A".to_owned()],
        );
        assert_eq!(format_reply(&response), "250 2.0.0 Ok queued as 4F2A");
    }
}
