//! `consign serve`: the long-running server, on the embedded ledger or on Kafka.
//!
//! One process runs everything: the HTTP API and recipient pages, the scheduler that
//! releases and expires deliveries, and the notifier that sends the e-mails. It stops
//! gracefully on SIGTERM or Ctrl-C: it stops accepting connections, lets requests in
//! flight finish, stops the scheduler and the notifier, and closes the ledger after
//! the queued appends. If the scheduler or the notifier fails, the server stops too,
//! with an error, rather than run on without them.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use consign_ledger::checkpoint::CheckpointPolicy;
use consign_ledger::kafka::{KafkaStatus, open_kafka_ledger};
use consign_ledger::postmark::PostmarkKeys;
use consign_ledger::{Clock, EmbeddedLedger, EmbeddedOptions};
use consign_notifier::{
    ComposeError, Composer, ComposerConfig, Mailer, MessageIdDomain, SmtpConfig, SmtpSecurity,
};
use consign_notifier::{Dispatcher, DispatcherConfig};
use consign_schemas::ChainId;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::app::{Core, CoreParts, Limits, MailTransport, Transport};
use crate::blobs::BlobStore;
use crate::cli::DataDirArgs;
use crate::cli::backend::{POSTMARK_KEYS, Role};
use crate::listen::{ListenConfig, TlsFiles};
use consign_projections::billing::{MAX_RATE_CENTS, RateTable};
use consign_projections::{ALL_VIEWS, ViewStore, ViewStoreOptions};

mod health;
mod startup;

use health::Health;
use startup::{
    ServerKeys, check_keys_against_ledger, check_listen_address, check_public_url_path,
    load_or_create_keys, prepare_outbox,
};

/// Time allowed, beyond one send, for another server to record the outcome of an
/// e-mail it was sending when the delivery's chain moved here.
const FOREIGN_OUTCOME_MARGIN: Duration = Duration::from_secs(30);

/// Maximum wait at start for the copy of the Kafka ledger and for the sequencers.
const KAFKA_START: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataDirArgs,

    /// Address and port to listen on, as HOST:PORT.
    #[arg(long, env = "CONSIGN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Base URL of the links in e-mails, as recipients reach this server, such as
    /// https://consign.example.org, without a path. Defaults to http(s)://LISTEN.
    #[arg(long, env = "CONSIGN_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// SMTP relay: smtp://[USER:PASSWORD@]HOST[:PORT] (plain),
    /// smtp://HOST[:PORT]?tls=starttls (STARTTLS required) or smtps://HOST[:PORT]
    /// (implicit TLS). Without it, e-mails are written as .eml files to the outbox
    /// folder.
    #[arg(long, env = "CONSIGN_SMTP")]
    pub smtp: Option<String>,

    /// Folder of the stored documents. Defaults to DATA_DIR/blobs. Servers on one Kafka
    /// topic that share this folder (a shared filesystem) each serve every document,
    /// wherever it was uploaded. A folder given here must exist and is treated as
    /// shared: no document is removed from it, and temp files only after an hour.
    #[arg(long, env = "CONSIGN_BLOB_DIR")]
    pub blob_dir: Option<PathBuf>,

    /// Folder for .eml files when no --smtp is given. Defaults to DATA_DIR/outbox.
    #[arg(long, env = "CONSIGN_OUTBOX")]
    pub outbox: Option<PathBuf>,

    /// From address of every e-mail.
    #[arg(long, env = "CONSIGN_MAIL_FROM", default_value = "consign@localhost")]
    pub mail_from: String,

    /// Display name of the From address.
    #[arg(long, env = "CONSIGN_MAIL_FROM_NAME", default_value = "consign")]
    pub mail_from_name: String,

    /// PEM certificate chain for HTTPS; needs --tls-key.
    #[arg(long, env = "CONSIGN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for HTTPS; needs --tls-cert.
    #[arg(long, env = "CONSIGN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Number of chains of a new ledger. An existing ledger keeps the count it was
    /// created with, and a different value is rejected.
    #[arg(long, env = "CONSIGN_CHAINS", value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub chains: Option<u32>,

    /// JSON file of billing rates in cents, each key required and at most 1000000000:
    /// per_delivery, per_recipient, per_gib, per_normal_priority, per_high_priority,
    /// per_urgent_priority, per_postmark. Without it, billing exports show usage only.
    #[arg(long, env = "CONSIGN_RATES")]
    pub rates: Option<PathBuf>,

    /// Maximum size of one document, in bytes.
    #[arg(long, env = "CONSIGN_MAX_DOCUMENT_BYTES", default_value_t = Limits::default().max_document_bytes, value_parser = positive::<u64>)]
    pub max_document_bytes: u64,

    /// Maximum number of documents in one delivery.
    #[arg(long, env = "CONSIGN_MAX_DOCUMENTS", default_value_t = Limits::default().max_documents, value_parser = positive::<usize>)]
    pub max_documents: usize,

    /// Maximum number of recipients in one delivery, after expanding mailing lists.
    #[arg(long, env = "CONSIGN_MAX_RECIPIENTS", default_value_t = Limits::default().max_recipients, value_parser = positive::<usize>)]
    pub max_recipients: usize,

    /// Sign a checkpoint of a chain after at most this many events.
    #[arg(long, env = "CONSIGN_CHECKPOINT_EVERY_EVENTS", default_value_t = 1000, value_parser = positive::<u64>)]
    pub checkpoint_every_events: u64,

    /// With --kafka: the chains whose sequencer runs in this process, as a
    /// comma-separated list such as 0,2,4. Defaults to every chain. A sequencer started
    /// here fences the one of the same chain in any other process.
    #[arg(
        long,
        env = "CONSIGN_KAFKA_SEQUENCE",
        value_delimiter = ',',
        requires = "kafka"
    )]
    pub kafka_sequence: Option<Vec<u32>>,

    /// With --kafka: share the chains with every other server started with this flag on
    /// the same topic, through a Kafka consumer group. Each server sequences the chains
    /// the group assigns to it, and a server that stops hands its chains to the others
    /// within about 6 s. Documents stay with the server that took the upload unless the
    /// servers share --blob-dir.
    #[arg(
        long,
        env = "CONSIGN_KAFKA_BALANCE",
        requires = "kafka",
        conflicts_with = "kafka_sequence"
    )]
    pub kafka_balance: bool,

    /// Sign a checkpoint of a chain at most this many milliseconds after an event.
    #[arg(long, env = "CONSIGN_CHECKPOINT_EVERY_MS", default_value_t = 1000, value_parser = positive::<u64>)]
    pub checkpoint_every_ms: u64,
}

/// Opens the embedded ledger, or the copy of the Kafka ledger with its sequencers and
/// their status.
async fn open_ledger(
    args: &ServeArgs,
    options: EmbeddedOptions,
) -> anyhow::Result<(EmbeddedLedger, Option<KafkaStatus>)> {
    let data_dir = &args.data.data_dir;
    let Some(mut kafka) = args.data.kafka_options(Role::Sequence(None)) else {
        let ledger = EmbeddedLedger::open(data_dir, options)
            .with_context(|| format!("cannot open the ledger in {}", data_dir.display()))?;
        return Ok((ledger, None));
    };
    kafka.sequence = args
        .kafka_sequence
        .as_ref()
        .map(|chains| chains.iter().copied().map(ChainId::new).collect());
    kafka.balance = args.kafka_balance;
    let (ledger, status) = open_kafka_ledger(data_dir, options, &kafka)
        .await
        .with_context(|| {
            format!(
                "cannot open the copy of the Kafka ledger ({} at {}) in {}",
                kafka.topic,
                kafka.brokers,
                data_dir.display()
            )
        })?;
    if !status.catch_up(KAFKA_START).await? {
        tracing::warn!(topic = %kafka.topic, "the local copy is still catching up with Kafka");
    }
    if kafka.balance {
        tracing::info!(topic = %kafka.topic, "the chains to sequence come from the consumer group");
        return Ok((ledger, Some(status)));
    }
    let sequenced: Vec<ChainId> = kafka
        .sequence
        .clone()
        .unwrap_or_else(|| ledger.chains().collect());
    if status.wait_ready(&sequenced, KAFKA_START).await {
        tracing::info!(topic = %kafka.topic, chains = ?sequenced, "sequencers ready");
    } else {
        tracing::warn!(
            topic = %kafka.topic,
            ready = ?status.ready_chains(),
            "not every sequencer is ready; appends to the others get 503 until they are"
        );
    }
    Ok((ledger, Some(status)))
}

/// Parses a count that must be at least 1.
pub(crate) fn positive<T: std::str::FromStr + PartialEq + From<u8>>(text: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    match text.parse::<T>() {
        Ok(count) if count == T::from(0) => Err("must be at least 1".to_owned()),
        Ok(count) => Ok(count),
        Err(error) => Err(format!("{error}; give a whole number of at least 1")),
    }
}

/// Runs the server until SIGTERM or Ctrl-C.
///
/// # Errors
///
/// The ledger cannot be opened, an option is invalid, the address cannot be bound, or
/// the scheduler or the notifier failed.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    run(args, Clock::system(), None, shutdown_signal()).await
}

/// Runs the server until `shutdown` completes, on `clock`, and reports the bound
/// address to `bound` once it listens. Tests use it with a manual clock and port 0.
///
/// # Errors
///
/// As [`serve`].
pub async fn run(
    args: ServeArgs,
    clock: Clock,
    bound: Option<oneshot::Sender<SocketAddr>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let data_dir = &args.data.data_dir;

    // Settings are checked before anything is created in the data directory, so that a
    // bad value leaves nothing behind.
    let keys = args.data.keys_dir()?;
    check_listen_address(&args.listen).await?;
    let tls = args
        .tls_cert
        .clone()
        .zip(args.tls_key.clone())
        .map(|(cert, key)| TlsFiles { cert, key });
    if let Some(files) = &tls {
        crate::listen::check_tls(files)?;
    }
    let smtp = args
        .smtp
        .as_deref()
        .map(str::parse::<SmtpConfig>)
        .transpose()?;
    // Checked before listening, so a bad From address or URL stops the start at once.
    if let Some(public_url) = &args.public_url {
        check_public_url_path(public_url)?;
    }
    composer(
        &args,
        args.public_url.as_deref().unwrap_or("http://127.0.0.1"),
    )?;
    if let Some(public_url) = &args.public_url {
        message_id_domain(public_url)?;
    }
    let rates = match &args.rates {
        Some(path) => Some(load_rates(path)?),
        None => None,
    };
    // A ledger already in the data directory must open before the document store and
    // the keys are added beside it, so that a damaged one, or one with another chain
    // count than --chains, is left as it was.
    if args.data.kafka.is_none() {
        EmbeddedLedger::check_files(data_dir)
            .with_context(|| format!("cannot open the ledger in {}", data_dir.display()))?;
    }
    if args.data.kafka.is_none() && data_dir.join("ledger/CURRENT").exists() {
        let read_only = EmbeddedOptions {
            read_only: true,
            chains: args.chains,
            ..EmbeddedOptions::default()
        };
        let ledger = EmbeddedLedger::open(data_dir, read_only)
            .with_context(|| format!("cannot open the ledger in {}", data_dir.display()))?;
        check_keys_against_ledger(&ledger, &keys)?;
        drop(ledger);
    }
    // The outbox may be outside the data directory, so it is created only after the
    // checks of an existing ledger, which leave everything as it was.
    if smtp.is_none()
        && let Some(outbox) = &args.outbox
    {
        prepare_outbox(outbox, "--outbox")?;
    }
    let blobs = match &args.blob_dir {
        Some(dir) => BlobStore::open_shared(dir)?,
        None => BlobStore::open(data_dir.join("blobs")).with_context(|| {
            format!(
                "cannot create the document store in the data directory {} (--data-dir); \
                 give a folder that the server's user can create and write in",
                data_dir.display()
            )
        })?,
    };

    let ServerKeys {
        postmark: postmark_keys,
        kek,
        links,
    } = load_or_create_keys(&args, &keys).await?;
    let options = EmbeddedOptions {
        chains: args.chains,
        clock: clock.clone(),
        checkpoints: Some(CheckpointPolicy {
            every_events: args.checkpoint_every_events,
            every: Duration::from_millis(args.checkpoint_every_ms),
            signer: Arc::new(PostmarkKeys::load(&keys.join(POSTMARK_KEYS))?),
        }),
        ..EmbeddedOptions::default()
    };
    let (ledger, kafka_status) = open_ledger(&args, options).await?;
    let ledger = Arc::new(ledger);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (mailer, mail_transport) = mailer(&args, smtp)?;
    let links_https = tls.is_some()
        || args
            .public_url
            .as_deref()
            .is_some_and(|url| url.starts_with("https://"));
    let views = open_views(&ledger, &data_dir.join("views")).await?;

    let core = Core::start(CoreParts {
        ledger: Arc::clone(&ledger),
        blobs,
        kek,
        links: links.clone(),
        clock: clock.clone(),
        limits: Limits {
            max_document_bytes: args.max_document_bytes,
            max_documents: args.max_documents,
            max_recipients: args.max_recipients,
            ..Limits::default()
        },
        secure_cookies: tls.is_some(),
        transport: Transport {
            mail: mail_transport,
            links_https,
        },
        views: Arc::clone(&views),
        rates,
        postmark_keys,
    })
    .await
    .context("cannot fold the ledger into the model")?;
    let referenced: std::collections::HashSet<String> = core
        .model()
        .documents()
        .map(|document| document.storage_key.clone())
        .collect();
    let removed = core
        .blobs
        .remove_unreferenced(|key| referenced.contains(key))
        .context("cannot clean up the document store")?;
    if removed > 0 {
        tracing::warn!(
            removed,
            "removed documents of submissions that a crash kept off the ledger"
        );
    }

    // Cancelled on shutdown, and by the scheduler or the notifier when it fails, which
    // then stops the whole server.
    let stop = CancellationToken::new();
    let stopping = {
        let stop = stop.clone();
        let failed = core.failed.clone();
        async move {
            tokio::select! {
                () = shutdown => {}
                () = stop.cancelled() => {}
                () = failed.cancelled() => {
                    tracing::error!("the model stopped following the ledger; stopping the server");
                }
            }
        }
    };
    let app = crate::app::router(Arc::clone(&core)).route(
        "/healthz",
        get(health::health).with_state(Health {
            core: Arc::clone(&core),
            kafka: kafka_status,
        }),
    );
    let (bound_sender, bound_receiver) = oneshot::channel();
    let config = ListenConfig {
        tls,
        bound_address: Some(bound_sender),
        ..ListenConfig::new(args.listen.clone())
    };
    let server = tokio::spawn(crate::listen::serve(app, config, stopping));
    // The bound address arrives once the socket listens. When binding fails, the
    // sender is dropped first and the server task then returns the reason.
    let Ok(address) = bound_receiver.await else {
        stop.cancel();
        server
            .await
            .context("the HTTP server task panicked")?
            .context("the HTTP server failed")?;
        anyhow::bail!("the HTTP server stopped before it listened");
    };

    // Links point at the bound address unless a public URL is configured, so port 0
    // gives working links too.
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{address}"));
    let mut dispatcher_config = DispatcherConfig::new(
        Arc::clone(&ledger),
        mailer,
        composer(&args, &public_url)?,
        links,
        message_id_domain(&public_url)?,
        clock,
    );
    if args.data.kafka.is_some() {
        // Another server may be sending an attempt it recorded just before its chain
        // moved here. Its outcome arrives within one send and the append after it.
        dispatcher_config.foreign_attempt_grace =
            dispatcher_config.mailer.send_timeout() + FOREIGN_OUTCOME_MARGIN;
    }
    let dispatcher = Dispatcher::new(dispatcher_config);
    let scheduler = tokio::spawn({
        let core = Arc::clone(&core);
        let stop = stop.clone();
        async move {
            let result = crate::app::scheduler::run(core, stop.clone().cancelled_owned()).await;
            if let Err(error) = &result {
                tracing::error!(%error, "the scheduler failed; stopping the server");
                stop.cancel();
            }
            result
        }
    });
    let notifier = tokio::spawn({
        let stop = stop.clone();
        async move {
            let result = dispatcher.run(stop.clone().cancelled_owned()).await;
            if let Err(error) = &result {
                tracing::error!(%error, "the notifier failed; stopping the server");
                stop.cancel();
            }
            result
        }
    });
    // The follower blocks its thread for each batch's write. On a thread of its own it
    // leaves the runtime's workers to the requests. The same worker threads then keep
    // receiving uploads, so their buffers stay in the workers' allocator arenas.
    let (projected_sender, projector) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("consign-views".to_owned())
        .spawn({
            let runtime = tokio::runtime::Handle::current();
            let ledger = Arc::clone(&ledger);
            let views = Arc::clone(&views);
            let stop = stop.clone();
            move || {
                let result = runtime.block_on(consign_projections::follow(
                    &ledger,
                    &views,
                    &ALL_VIEWS,
                    stop.clone().cancelled_owned(),
                ));
                if let Err(error) = &result {
                    tracing::error!(%error, "the views stopped following the ledger; stopping the server");
                    stop.cancel();
                }
                // The receiver is gone only when serving already ended in an error.
                let _ = projected_sender.send(result);
            }
        })
        .context("starting the view follower thread failed")?;
    tracing::info!(data_dir = %data_dir.display(), %public_url, "consign serving");
    if let Some(bound) = bound {
        let _ = bound.send(address);
    }

    let served = server.await.context("the HTTP server task panicked")?;
    stop.cancel();
    let scheduled = scheduler.await.context("the scheduler task panicked")?;
    let notified = notifier.await.context("the notifier task panicked")?;
    let projected = projector
        .await
        .context("the view follower thread panicked")?;
    let failed = core.failed.is_cancelled();
    drop(core);
    served.context("the HTTP server failed")?;
    if failed {
        anyhow::bail!("the model stopped following the ledger; see the error logged before");
    }
    scheduled.context("the scheduler stopped")?;
    notified.context("the notifier stopped")?;
    projected.context("the views stopped")?;
    tracing::info!("consign stopped; the ledger is closed");
    Ok(())
}

/// Builds the SMTP mailer for `smtp`, the parsed `--smtp`, or the outbox mailer when
/// no relay is configured.
fn mailer(args: &ServeArgs, smtp: Option<SmtpConfig>) -> anyhow::Result<(Mailer, MailTransport)> {
    if let Some(config) = smtp {
        tracing::info!(relay = %config, "e-mail goes through the SMTP relay");
        let transport = match config.security {
            SmtpSecurity::Plain => MailTransport::Plain,
            SmtpSecurity::StartTls | SmtpSecurity::ImplicitTls => MailTransport::Tls,
        };
        return Ok((Mailer::smtp(&config)?, transport));
    }
    let outbox = args
        .outbox
        .clone()
        .unwrap_or_else(|| args.data.data_dir.join("outbox"));
    if args.outbox.is_none() {
        // A given --outbox was checked before the data directory was created.
        prepare_outbox(&outbox, "the default outbox in the data directory")?;
    }
    tracing::info!(outbox = %outbox.display(), "no --smtp given: e-mails are written as .eml files to the outbox folder");
    Ok((Mailer::outbox(outbox)?, MailTransport::Outbox))
}

fn composer(args: &ServeArgs, public_url: &str) -> anyhow::Result<Composer> {
    if let Some(character) = args.mail_from_name.chars().find(|c| c.is_control()) {
        anyhow::bail!(
            "--mail-from-name {:?} contains the control character U+{:04X}; give a name on \
             one line",
            args.mail_from_name,
            u32::from(character)
        );
    }
    Composer::new(ComposerConfig {
        from_address: args.mail_from.clone(),
        from_name: Some(args.mail_from_name.clone()),
        public_base_url: public_url.to_owned(),
    })
    .map_err(|error| {
        let option = match error {
            ComposeError::InvalidBaseUrl { .. } => "--public-url",
            _ => "--mail-from",
        };
        anyhow::Error::new(error).context(format!("invalid e-mail settings; check {option}"))
    })
}

/// Uses the public URL's host as the domain of Message-IDs.
fn message_id_domain(public_url: &str) -> anyhow::Result<MessageIdDomain> {
    let host = url::Url::parse(public_url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_else(|| "localhost".to_owned());
    Ok(MessageIdDomain::new(&host)?)
}

/// Reads the billing rate table and checks that no price is above
/// [`MAX_RATE_CENTS`].
fn load_rates(path: &std::path::Path) -> anyhow::Result<RateTable> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the rates file {}", path.display()))?;
    let rates: RateTable = serde_json::from_str(&text).with_context(|| {
        format!(
            "invalid rates file {}: expected a JSON object of integer cents with the keys \
             per_delivery, per_recipient, per_gib, per_normal_priority, per_high_priority, \
             per_urgent_priority and per_postmark",
            path.display()
        )
    })?;
    if let Some((name, cents)) = rates.first_out_of_range() {
        anyhow::bail!(
            "invalid rates file {}: {name} is {cents} cents, above the maximum of \
             {MAX_RATE_CENTS}; give each price in cents of the billing currency, such as \
             150 for 1.50",
            path.display()
        );
    }
    Ok(rates)
}

/// Opens the view store and applies every event it has not seen, with a log line for
/// each ten percent on a large ledger.
async fn open_views(
    ledger: &Arc<EmbeddedLedger>,
    dir: &std::path::Path,
) -> anyhow::Result<Arc<ViewStore>> {
    let options = ViewStoreOptions::new(ledger.chain_count());
    let views = ViewStore::open(dir, &options, &ALL_VIEWS)
        .with_context(|| format!("cannot open the views in {}", dir.display()))?;
    let views = Arc::new(views);
    let caught_up = tokio::task::spawn_blocking({
        let ledger = Arc::clone(ledger);
        let views = Arc::clone(&views);
        move || {
            let mut logged = 0;
            consign_projections::catch_up(&ledger, &views, &ALL_VIEWS, |progress| {
                let tenth = (progress.applied * 10)
                    .checked_div(progress.total)
                    .unwrap_or(10);
                if tenth > logged {
                    logged = tenth;
                    tracing::info!(
                        applied = progress.applied,
                        total = progress.total,
                        "views catching up"
                    );
                }
            })
        }
    })
    .await
    .context("the view catch-up task panicked")?
    .context("cannot bring the views up to the ledger")?;
    tracing::info!(applied = caught_up.applied, "views up to date");
    Ok(views)
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
