//! Tests of [`serve`] with real sockets on loopback: plain HTTP, HTTPS with a
//! certificate made by the `openssl` command, certificate errors, address parsing and
//! graceful shutdown with slow and stalled clients.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use axum::routing::get;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::*;

/// Maximum shutdown time in these tests before a shutdown counts as blocked.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

/// A server started by [`start`].
struct Running {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ListenError>>,
}

impl Running {
    /// Triggers the shutdown and returns how long `serve` took to return.
    async fn shut_down(self) -> Duration {
        let started = Instant::now();
        self.stop.send(()).expect("server still running");
        let result = tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("serve returned within 60 s")
            .expect("serve task did not panic");
        assert!(result.is_ok(), "serve failed: {result:?}");
        started.elapsed()
    }
}

fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "slow"
            }),
        )
        .route(
            "/stuck",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(600)).await;
                "never"
            }),
        )
}

async fn start(mut config: ListenConfig) -> Running {
    let (bound_sender, bound_receiver) = oneshot::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    config.bound_address = Some(bound_sender);
    let task = tokio::spawn(serve(router(), config, async {
        let _ = stopped.await;
    }));
    let address = bound_receiver.await.expect("server reports its address");
    Running {
        address,
        stop,
        task,
    }
}

/// Runs `serve` with a configuration that must fail before listening.
async fn serve_error(config: ListenConfig) -> ListenError {
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        serve(router(), config, std::future::pending()),
    )
    .await
    .expect("serve returned an error at once");
    result.expect_err("configuration should be rejected")
}

/// Makes a self-signed certificate for localhost and 127.0.0.1, returning the paths
/// of the certificate and the key.
fn make_certificate(dir: &Path, name: &str) -> TlsFiles {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let output = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            // webpki rejects a CA certificate as the server's own certificate, which
            // `openssl req -x509` makes by default.
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command runs");
    assert!(
        output.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    TlsFiles { cert, key }
}

fn tls_config(files: TlsFiles) -> ListenConfig {
    ListenConfig {
        tls: Some(files),
        ..ListenConfig::new("127.0.0.1:0")
    }
}

#[tokio::test]
async fn plain_http_serves_requests() {
    let server = start(ListenConfig::new("127.0.0.1:0")).await;
    assert!(server.address.ip().is_loopback());
    assert_ne!(server.address.port(), 0);

    let response = reqwest::get(format!("http://{}/", server.address))
        .await
        .expect("request succeeds");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "hello");

    let elapsed = server.shut_down().await;
    assert!(elapsed < SHUTDOWN_LIMIT, "shutdown took {elapsed:?}");
}

#[tokio::test]
async fn https_with_self_signed_certificate() {
    let dir = TempDir::new().expect("temporary directory");
    let files = make_certificate(dir.path(), "server");
    let pem = std::fs::read(&files.cert).expect("certificate written");
    let server = start(tls_config(files)).await;

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM certificate"))
        .resolve("localhost", server.address)
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/", server.address.port());
    let response = client
        .get(&url)
        .send()
        .await
        .expect("HTTPS request succeeds");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "hello");

    let by_ip = format!("https://127.0.0.1:{}/", server.address.port());
    let response = client
        .get(&by_ip)
        .send()
        .await
        .expect("request by IP succeeds");
    assert_eq!(response.status(), 200);

    let plain = reqwest::get(format!("http://{}/", server.address)).await;
    assert!(plain.is_err(), "plain HTTP on the HTTPS port: {plain:?}");

    let elapsed = server.shut_down().await;
    assert!(elapsed < SHUTDOWN_LIMIT, "shutdown took {elapsed:?}");
}

#[tokio::test]
async fn untrusted_certificate_rejected_by_client() {
    let dir = TempDir::new().expect("temporary directory");
    let server = start(tls_config(make_certificate(dir.path(), "server"))).await;

    let result = reqwest::Client::new()
        .get(format!("https://127.0.0.1:{}/", server.address.port()))
        .send()
        .await;
    assert!(result.is_err(), "self-signed certificate was trusted");
    server.shut_down().await;
}

#[tokio::test]
async fn mismatched_key_is_rejected() {
    let dir = TempDir::new().expect("temporary directory");
    let first = make_certificate(dir.path(), "first");
    let second = make_certificate(dir.path(), "second");
    let files = TlsFiles {
        cert: first.cert.clone(),
        key: second.key.clone(),
    };

    let error = serve_error(tls_config(files)).await;
    assert!(
        matches!(error, ListenError::KeyMismatch { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&second.key.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&first.cert.display().to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn missing_certificate_file() {
    let dir = TempDir::new().expect("temporary directory");
    let files = make_certificate(dir.path(), "server");
    let missing = dir.path().join("missing.crt");
    let config = tls_config(TlsFiles {
        cert: missing.clone(),
        key: files.key,
    });

    let error = serve_error(config).await;
    assert!(matches!(error, ListenError::ReadFile { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(message.contains("certificate"), "{message}");
}

#[tokio::test]
async fn pem_without_certificate() {
    let dir = TempDir::new().expect("temporary directory");
    let files = make_certificate(dir.path(), "server");
    let config = tls_config(TlsFiles {
        cert: files.key.clone(),
        key: files.key.clone(),
    });

    let error = serve_error(config).await;
    assert!(
        matches!(error, ListenError::NoCertificate { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(&files.key.display().to_string()));
}

#[tokio::test]
async fn pem_without_private_key() {
    let dir = TempDir::new().expect("temporary directory");
    let files = make_certificate(dir.path(), "server");
    let config = tls_config(TlsFiles {
        cert: files.cert.clone(),
        key: files.cert.clone(),
    });

    let error = serve_error(config).await;
    assert!(
        matches!(error, ListenError::NoPrivateKey { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains(&files.cert.display().to_string())
    );
}

#[tokio::test]
async fn encrypted_private_key_named() {
    let dir = TempDir::new().expect("temporary directory");
    let files = make_certificate(dir.path(), "server");
    // Only the block's label matters to the check, so the content need not decrypt.
    let key = dir.path().join("encrypted-key.pem");
    std::fs::write(
        &key,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let config = tls_config(TlsFiles {
        cert: files.cert.clone(),
        key: key.clone(),
    });

    let error = serve_error(config).await;
    assert!(
        matches!(error, ListenError::EncryptedKey { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&key.display().to_string()), "{message}");
    assert!(message.contains("openssl pkey"), "{message}");
}

#[tokio::test]
async fn localhost_port_zero_binds() {
    let server = start(ListenConfig::new("localhost:0")).await;
    assert!(server.address.ip().is_loopback(), "{}", server.address);
    assert_ne!(server.address.port(), 0);

    let response = reqwest::get(format!("http://{}/", server.address))
        .await
        .expect("request succeeds");
    assert_eq!(response.status(), 200);
    server.shut_down().await;
}

#[tokio::test]
async fn ipv6_loopback_binds() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: this machine has no IPv6 loopback");
        return;
    }
    let server = start(ListenConfig::new("[::1]:0")).await;
    assert!(server.address.is_ipv6());
    let response = reqwest::get(format!("http://{}/", server.address))
        .await
        .expect("request succeeds");
    assert_eq!(response.status(), 200);
    server.shut_down().await;
}

#[tokio::test]
async fn invalid_listen_addresses() {
    for value in [
        "",
        "8080",
        "localhost",
        ":8080",
        "::1:8080",
        "127.0.0.1:99999",
        "127.0.0.1:http",
        "127.0.0.1:-1",
    ] {
        let error = serve_error(ListenConfig::new(value)).await;
        assert!(
            matches!(error, ListenError::InvalidAddress { .. }),
            "{value:?}: {error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(&format!("{value:?}")), "{message}");
        assert!(message.contains("expected HOST:PORT"), "{message}");
    }
}

#[tokio::test]
async fn address_in_use() {
    let occupant = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let address = occupant.local_addr().expect("local address");

    let error = serve_error(ListenConfig::new(address.to_string())).await;
    assert!(matches!(error, ListenError::Bind { .. }), "{error:?}");
    assert!(error.to_string().contains(&address.to_string()));
}

#[tokio::test]
async fn requests_in_flight_finish() {
    let server = start(ListenConfig::new("127.0.0.1:0")).await;
    let url = format!("http://{}/slow", server.address);
    let request = tokio::spawn(async move { reqwest::get(url).await?.text().await });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let elapsed = server.shut_down().await;
    let body = request
        .await
        .expect("request task")
        .expect("slow request succeeds");
    assert_eq!(body, "slow");
    assert!(elapsed < SHUTDOWN_LIMIT, "shutdown took {elapsed:?}");
}

#[tokio::test]
async fn grace_period_bounds_shutdown() {
    let config = ListenConfig {
        shutdown_grace: Duration::from_millis(500),
        ..ListenConfig::new("127.0.0.1:0")
    };
    let server = start(config).await;
    let url = format!("http://{}/stuck", server.address);
    let request = tokio::spawn(async move { reqwest::get(url).await });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let elapsed = server.shut_down().await;
    assert!(
        elapsed >= Duration::from_millis(400),
        "shutdown took {elapsed:?}"
    );
    assert!(elapsed < SHUTDOWN_LIMIT, "shutdown took {elapsed:?}");
    let result = tokio::time::timeout(Duration::from_secs(5), request)
        .await
        .expect("client sees the connection close")
        .expect("request task");
    assert!(result.is_err(), "stuck request got a response: {result:?}");
}

#[tokio::test]
async fn half_request_does_not_block_shutdown() {
    let config = ListenConfig {
        header_read_timeout: Duration::from_secs(1),
        ..ListenConfig::new("127.0.0.1:0")
    };
    let server = start(config).await;

    let mut half = TcpStream::connect(server.address).await.expect("connect");
    half.write_all(b"GET / HT")
        .await
        .expect("send part of a request line");
    let _silent = TcpStream::connect(server.address).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let elapsed = server.shut_down().await;
    assert!(elapsed < SHUTDOWN_LIMIT, "shutdown took {elapsed:?}");
}

#[tokio::test]
async fn stalled_tls_handshake_does_not_block_shutdown() {
    let dir = TempDir::new().expect("temporary directory");
    let config = ListenConfig {
        header_read_timeout: Duration::from_secs(1),
        ..tls_config(make_certificate(dir.path(), "server"))
    };
    let server = start(config).await;

    let mut stalled = TcpStream::connect(server.address).await.expect("connect");
    stalled
        .write_all(&[0x16, 0x03, 0x01])
        .await
        .expect("send part of a ClientHello");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let elapsed = server.shut_down().await;
    assert!(elapsed < SHUTDOWN_LIMIT, "shutdown took {elapsed:?}");
}
