//! Accepting HTTP and HTTPS connections, with a graceful shutdown.
//!
//! [`serve`] resolves the configured address, binds it, loads the TLS certificate if
//! one is configured, and runs an axum router on axum-server with hyper's automatic
//! HTTP/1 and HTTP/2 detection. Handlers can extract the client address as
//! `ConnectInfo<SocketAddr>`.
//!
//! When the shutdown future completes, the listener closes at once, idle connections
//! close, and requests in flight may finish for up to the shutdown grace period,
//! after which the remaining connections are dropped. A client that sends only part
//! of a request head cannot stretch this past the header read timeout: hyper closes
//! such an HTTP/1 connection when the timeout expires, and the TLS handshake has the
//! same limit.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::TokioTimer;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::oneshot;

/// Default of [`ListenConfig::header_read_timeout`].
pub(crate) const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Default of [`ListenConfig::shutdown_grace`].
pub(crate) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Listening address, TLS files and timeouts of [`serve`].
#[derive(Debug)]
pub(crate) struct ListenConfig {
    /// `HOST:PORT`, such as `127.0.0.1:8080`, `localhost:8080` or `[::1]:8080`. A host
    /// name is resolved and the first of its addresses that can be bound is used. Port
    /// 0 picks a free port, which `bound_address` reports.
    pub(crate) listen: String,
    /// Certificate and key for HTTPS; plain HTTP when `None`.
    pub(crate) tls: Option<TlsFiles>,
    /// Time a client has to send a complete request head (HTTP/1) or to finish the
    /// TLS handshake before its connection is closed.
    pub(crate) header_read_timeout: Duration,
    /// Time requests in flight may take to finish after shutdown begins.
    pub(crate) shutdown_grace: Duration,
    /// Receives the bound address as soon as the socket listens.
    pub(crate) bound_address: Option<oneshot::Sender<SocketAddr>>,
}

impl ListenConfig {
    /// Builds a plain HTTP configuration for `listen` with the default timeouts.
    pub(crate) fn new(listen: impl Into<String>) -> Self {
        Self {
            listen: listen.into(),
            tls: None,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            bound_address: None,
        }
    }
}

/// PEM files of the server certificate and its private key.
#[derive(Clone, Debug)]
pub(crate) struct TlsFiles {
    /// The server certificate first, then any intermediate certificates.
    pub(crate) cert: PathBuf,
    /// A PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key.
    pub(crate) key: PathBuf,
}

/// Failures of [`serve`], each naming the value or file at fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ListenError {
    #[error(
        "invalid --listen {value:?}: {reason}; expected HOST:PORT with a port from 0 to \
         65535, such as 127.0.0.1:8080, localhost:8080 or [::1]:8080 (port 0 takes a free \
         port, which the \"listening\" log line names)"
    )]
    InvalidAddress { value: String, reason: String },

    #[error(
        "cannot listen on {address} (from {value:?}): {source}; {advice}",
        advice = bind_advice(source)
    )]
    Bind {
        value: String,
        address: SocketAddr,
        #[source]
        source: io::Error,
    },

    #[error("cannot read the TLS {kind} file {path}: {source}; check the path and its permissions")]
    ReadFile {
        /// "certificate" or "private key".
        kind: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("invalid PEM in the TLS {kind} file {path}: {source}; the file is damaged or not PEM")]
    InvalidPem {
        kind: &'static str,
        path: PathBuf,
        #[source]
        source: pem::Error,
    },

    #[error(
        "no certificate found in {path}; it must contain \"-----BEGIN CERTIFICATE-----\" \
         blocks, the server certificate first"
    )]
    NoCertificate { path: PathBuf },

    #[error(
        "no private key found in {path}; it must contain a \"-----BEGIN PRIVATE KEY-----\", \
         \"-----BEGIN EC PRIVATE KEY-----\" or \"-----BEGIN RSA PRIVATE KEY-----\" block"
    )]
    NoPrivateKey { path: PathBuf },

    #[error(
        "the private key in {path} is encrypted with a passphrase, which the server cannot \
         enter; write an unencrypted copy that only the server's user can read, such as \
         with `openssl pkey -in {path} -out server-key.pem`, and give that file"
    )]
    EncryptedKey { path: PathBuf },

    #[error(
        "the private key in {key} does not match the certificate in {cert}; use the key \
         that was generated together with this certificate"
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },

    #[error("cannot use the TLS certificate {cert} with the key {key}: {source}")]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },

    #[error("the HTTP server failed: {0}")]
    Serve(#[source] io::Error),
}

/// Serves `router` on `config.listen` until `shutdown` completes and the requests in
/// flight have finished or the grace period has passed.
///
/// # Errors
///
/// The address is invalid or cannot be bound, a TLS file cannot be read or used, or
/// accepting connections fails.
pub(crate) async fn serve(
    router: Router,
    config: ListenConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ListenError> {
    let tls = match &config.tls {
        Some(files) => Some(load_tls(files)?),
        None => None,
    };
    let addresses = resolve(&config.listen).await?;
    let listener = bind(&config.listen, &addresses)?;
    let address = listener.local_addr().map_err(|source| ListenError::Bind {
        value: config.listen.clone(),
        address: addresses[0],
        source,
    })?;

    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(listen = %config.listen, %address, scheme, "listening");
    if let Some(sender) = config.bound_address {
        // A dropped receiver means the caller does not need the address.
        let _ = sender.send(address);
    }

    let handle = Handle::new();
    let trigger = tokio::spawn(begin_shutdown(
        handle.clone(),
        shutdown,
        config.shutdown_grace,
    ));
    let service = router.into_make_service_with_connect_info::<SocketAddr>();

    let mut server = axum_server::from_tcp(listener).handle(handle.clone());
    server
        .http_builder()
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    server.http_builder().http2().timer(TokioTimer::new());
    let result = match tls {
        None => server.serve(service).await,
        Some(tls) => {
            let acceptor = RustlsAcceptor::new(tls).handshake_timeout(config.header_read_timeout);
            server.acceptor(acceptor).serve(service).await
        }
    };
    trigger.abort();

    let cut_off = handle.connection_count();
    if cut_off > 0 {
        tracing::warn!(
            %address,
            connections = cut_off,
            grace_seconds = config.shutdown_grace.as_secs_f64(),
            "closing connections still busy at the end of the shutdown grace period"
        );
    }
    match result {
        Ok(()) => {
            tracing::info!(%address, "stopped listening");
            Ok(())
        }
        Err(error) => {
            tracing::error!(%address, %error, "HTTP server failed");
            Err(ListenError::Serve(error))
        }
    }
}

/// Waits for `shutdown`, then starts the graceful shutdown of the server behind
/// `handle`.
async fn begin_shutdown(handle: Handle, shutdown: impl Future<Output = ()>, grace: Duration) {
    shutdown.await;
    tracing::info!(
        connections = handle.connection_count(),
        grace_seconds = grace.as_secs_f64(),
        "shutting down: no new connections, waiting for requests in flight"
    );
    handle.graceful_shutdown(Some(grace));
}

/// Returns the advice for a failed bind, by the kind of failure.
fn bind_advice(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::AddrNotAvailable => {
            "this machine has no such address; give one of its own addresses, or 0.0.0.0 for all"
        }
        io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges; choose a port from 1024 up"
        }
        _ => "choose another address or port, or stop the process that is using it",
    }
}

/// Resolves `HOST:PORT` into socket addresses.
pub(crate) async fn resolve(value: &str) -> Result<Vec<SocketAddr>, ListenError> {
    let invalid = |reason: String| ListenError::InvalidAddress {
        value: value.to_owned(),
        reason,
    };
    if let Ok(address) = value.parse::<SocketAddr>() {
        return Ok(vec![address]);
    }

    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(invalid("the port is missing".to_owned()));
    };
    if host.is_empty() {
        return Err(invalid("the host is missing".to_owned()));
    }
    if port.is_empty() {
        return Err(invalid("the port is missing".to_owned()));
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err(invalid("an IPv6 address must be in brackets".to_owned()));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(format!("the port {port:?} is not a number from 0 to 65535")))?;

    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|error| invalid(format!("cannot resolve the host {host:?}: {error}")))?
        .collect();
    if addresses.is_empty() {
        return Err(invalid(format!("the host {host:?} has no address")));
    }
    Ok(addresses)
}

/// Maximum bytes a connection keeps queued in the kernel beyond those on the wire.
///
/// A response waits for the socket before it reads its next chunk, so this bounds how
/// long a download to a slow client runs on after its delivery is withdrawn or
/// expires: without it, Linux queued about 3 MB for a client reading 200 KB/s.
#[cfg(target_os = "linux")]
const UNSENT_BYTES: u32 = 128 * 1024;

/// Binds the first of `addresses` that can be bound.
pub(crate) fn bind(value: &str, addresses: &[SocketAddr]) -> Result<TcpListener, ListenError> {
    let mut last_error = None;
    for &address in addresses {
        match TcpListener::bind(address) {
            Ok(listener) => {
                limit_unsent(&listener);
                return Ok(listener);
            }
            Err(source) => {
                tracing::debug!(%address, error = %source, "binding failed, trying the next address");
                last_error = Some(ListenError::Bind {
                    value: value.to_owned(),
                    address,
                    source,
                });
            }
        }
    }
    Err(last_error.unwrap_or_else(|| ListenError::InvalidAddress {
        value: value.to_owned(),
        reason: "it resolves to no address".to_owned(),
    }))
}

/// Sets [`UNSENT_BYTES`] on `listener`. Linux copies the option to every accepted
/// connection. A failure costs only the bound and is logged.
#[cfg(target_os = "linux")]
fn limit_unsent(listener: &TcpListener) {
    if let Err(error) = socket2::SockRef::from(listener).set_tcp_notsent_lowat(UNSENT_BYTES) {
        tracing::warn!(%error, "cannot limit the unsent bytes of connections (TCP_NOTSENT_LOWAT)");
    }
}

#[cfg(not(target_os = "linux"))]
fn limit_unsent(_listener: &TcpListener) {}

/// Reads the PEM files and builds a rustls configuration on the ring provider, with
/// ALPN offering HTTP/2 and HTTP/1.1.
/// Reads and checks the certificate and key of `files` without serving, so a bad file
/// stops a start before anything is created.
pub(crate) fn check_tls(files: &TlsFiles) -> Result<(), ListenError> {
    load_tls(files).map(drop)
}

/// Returns true for PEM text with a passphrase-protected key: a PKCS #8 `ENCRYPTED
/// PRIVATE KEY` block, or an OpenSSL key block with a `Proc-Type: 4,ENCRYPTED` header.
fn is_encrypted_key(pem: &[u8]) -> bool {
    let text = String::from_utf8_lossy(pem);
    text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
}

fn load_tls(files: &TlsFiles) -> Result<RustlsConfig, ListenError> {
    let cert_pem = read_file(&files.cert, "certificate")?;
    let key_pem = read_file(&files.key, "private key")?;

    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ListenError::InvalidPem {
            kind: "certificate",
            path: files.cert.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(ListenError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| match source {
        pem::Error::NoItemsFound if is_encrypted_key(&key_pem) => ListenError::EncryptedKey {
            path: files.key.clone(),
        },
        pem::Error::NoItemsFound => ListenError::NoPrivateKey {
            path: files.key.clone(),
        },
        source => ListenError::InvalidPem {
            kind: "private key",
            path: files.key.clone(),
            source,
        },
    })?;

    let tls_error = |source: rustls::Error| match source {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            ListenError::KeyMismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            }
        }
        source => ListenError::Tls {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        },
    };
    // The provider is passed explicitly, so no process-wide default is needed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}

fn read_file(path: &Path, kind: &'static str) -> Result<Vec<u8>, ListenError> {
    std::fs::read(path).map_err(|source| ListenError::ReadFile {
        kind,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests;
