//! Runs the notification dispatcher against a real embedded ledger in a temporary
//! directory and the aiosmtpd server of `tests/smtp_server.py` on loopback, with a
//! manual clock for every retry and expiry.
//!
//! The tests append the input events themselves: the sender's `AccountOpened` on chain
//! 0, then `DocumentUploaded`, `DeliverySubmitted` and `DeliveryReleased` on the
//! delivery's chain. They wait in real time only for the dispatcher's own appends, and
//! check the exact notification events per recipient and that every chain verifies.

mod support;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mail_parser::MessageParser;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use consign_ledger::workload::chain_for_delivery;
use consign_ledger::{
    AppendRequest, EmbeddedLedger, EmbeddedOptions, ManualClock, NewEvent, StoredEvent,
};
use consign_notifier::{
    DispatchError, Dispatcher, DispatcherConfig, LinkKey, Mailer, MessageIdDomain, SmtpConfig,
    token_hash,
};
use consign_schemas::events::{
    AccountOpened, DeliveryExpired, DeliveryOptions, DeliveryReleased, DeliverySubmitted,
    DeliveryWithdrawn, DocumentDownloaded, DocumentUploaded, Mailbox, NotificationKind, Priority,
    RecipientEntry, Role, ZonedTime,
};
use consign_schemas::{
    AccountId, Actor, ChainId, ContentHash, DeliveryId, DocumentId, Event, NotificationId,
    Position, RecipientId, SystemComponent, Timestamp,
};

use support::{PUBLIC_BASE_URL, SmtpServer, composer};

const CHAINS: u32 = 4;
const SENDER_ADDRESS: &str = "juergen@sender.test";
/// 2027-01-15T08:00:00Z, the manual clock's start.
const START: Timestamp = Timestamp::from_micros(1_800_000_000_000_000);
/// Real time allowed for the dispatcher to reach an expected state.
const WAIT_LIMIT: Duration = Duration::from_secs(30);
/// A PHC string that stands for the sender's access password, which no e-mail may
/// contain in any form.
const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$UGFzc3dvcmQtU2VzYW1l";

/// One notification event of a recipient, without its ids.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    Attempted(NotificationKind, u32),
    Sent(u32),
    Deferred(u32),
    Failed(u32),
    ReceiptSent,
}

/// A ledger in a temporary directory with the sender's account on chain 0.
struct Harness {
    dir: tempfile::TempDir,
    clock: ManualClock,
    /// `None` only while [`Harness::reopen`] runs.
    ledger: Option<Arc<EmbeddedLedger>>,
    link_key: LinkKey,
    sender: AccountId,
}

/// What a test delivery looks like; [`DeliverySpec::to`] gives the defaults.
struct DeliverySpec<'a> {
    recipients: &'a [&'a str],
    expires_at: Option<Timestamp>,
    receipt_requested: bool,
    password: bool,
    chain: Option<ChainId>,
}

impl<'a> DeliverySpec<'a> {
    fn to(recipients: &'a [&'a str]) -> Self {
        Self {
            recipients,
            expires_at: None,
            receipt_requested: false,
            password: false,
            chain: None,
        }
    }
}

/// A submitted delivery: its id, chain, document, and recipients with their addresses.
struct Delivery {
    id: DeliveryId,
    chain: ChainId,
    document: DocumentId,
    recipients: Vec<(RecipientId, String)>,
}

impl Delivery {
    fn recipient(&self, address: &str) -> RecipientId {
        self.recipients
            .iter()
            .find(|(_, candidate)| candidate == address)
            .map(|(id, _)| *id)
            .unwrap_or_else(|| panic!("{address} is not a recipient"))
    }
}

/// A dispatcher running as a task.
struct Running {
    shutdown: oneshot::Sender<()>,
    handle: JoinHandle<Result<(), DispatchError>>,
}

impl Running {
    /// Stops the dispatcher and checks that it ended without error.
    async fn stop(self) {
        let _ = self.shutdown.send(());
        let result = self.handle.await.expect("the dispatcher task panicked");
        result.expect("the dispatcher failed");
    }

    /// Aborts the dispatcher as a crash would: sends in progress end without outcome.
    async fn crash(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

fn open_ledger(dir: &std::path::Path, clock: &ManualClock) -> Arc<EmbeddedLedger> {
    let options = EmbeddedOptions {
        chains: Some(CHAINS),
        clock: clock.clock(),
        ..EmbeddedOptions::default()
    };
    Arc::new(EmbeddedLedger::open(dir, options).unwrap())
}

fn smtp_mailer(url: &str) -> Mailer {
    let config: SmtpConfig = url.parse().unwrap();
    Mailer::smtp(&config).unwrap()
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "consign_notifier=debug".into()),
        )
        .try_init();
}

impl Harness {
    /// Opens an empty ledger, without the sender's account.
    fn empty() -> Self {
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START);
        let ledger = open_ledger(dir.path(), &clock);
        Self {
            dir,
            clock,
            ledger: Some(ledger),
            link_key: LinkKey::from_bytes([42; 32]),
            sender: AccountId::random(),
        }
    }

    /// Opens a ledger with the sender's account on chain 0.
    async fn new() -> Self {
        let harness = Self::empty();
        harness.open_account().await;
        harness
    }

    async fn open_account(&self) {
        let opened = Event::AccountOpened(AccountOpened {
            account: self.sender,
            login: "juergen".to_owned(),
            display_name: "Jürgen Groß".to_owned(),
            email: SENDER_ADDRESS.to_owned(),
            role: Role::Sender,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        });
        let actor = Actor::System(SystemComponent::Administration);
        self.append(ChainId::new(0), actor, vec![opened]).await;
    }

    fn ledger(&self) -> &Arc<EmbeddedLedger> {
        self.ledger.as_ref().expect("the ledger is open")
    }

    async fn append(&self, chain: ChainId, actor: Actor, events: Vec<Event>) {
        let events = events
            .into_iter()
            .map(|event| NewEvent {
                actor: actor.clone(),
                event,
            })
            .collect();
        self.ledger()
            .append(AppendRequest::new(chain, events))
            .await
            .unwrap();
    }

    fn start(&self, mailer: Mailer) -> Running {
        self.start_with(mailer, |_| {})
    }

    fn start_with(&self, mailer: Mailer, adjust: impl FnOnce(&mut DispatcherConfig)) -> Running {
        let mut config = DispatcherConfig::new(
            Arc::clone(self.ledger()),
            mailer,
            composer(),
            self.link_key.clone(),
            MessageIdDomain::new("consign.test").unwrap(),
            self.clock.clock(),
        );
        adjust(&mut config);
        let (shutdown, stopped) = oneshot::channel::<()>();
        let dispatcher = Dispatcher::new(config);
        let handle = tokio::spawn(dispatcher.run(async move {
            let _ = stopped.await;
        }));
        Running { shutdown, handle }
    }

    /// Closes and reopens the ledger once nothing else uses it.
    async fn reopen(&mut self) {
        let started = Instant::now();
        while Arc::strong_count(self.ledger()) > 1 {
            assert!(started.elapsed() < WAIT_LIMIT, "the ledger is still in use");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ledger = self.ledger.take().expect("the ledger is open");
        Arc::try_unwrap(ledger).unwrap().close();
        self.ledger = Some(open_ledger(self.dir.path(), &self.clock));
    }

    /// Submits a delivery with one document and releases it.
    async fn deliver(&self, spec: DeliverySpec<'_>) -> Delivery {
        let id = loop {
            let id = DeliveryId::random();
            if spec
                .chain
                .is_none_or(|chain| chain_for_delivery(id, CHAINS) == chain)
            {
                break id;
            }
        };
        let chain = chain_for_delivery(id, CHAINS);
        let document = DocumentId::random();
        let recipients: Vec<(RecipientId, String)> = spec
            .recipients
            .iter()
            .map(|address| (RecipientId::random(), (*address).to_owned()))
            .collect();

        let uploaded = Event::DocumentUploaded(DocumentUploaded {
            document,
            account: self.sender,
            file_name: "Vertrag über 契約.pdf".to_owned(),
            media_type: "application/pdf".to_owned(),
            size: 48_213,
            content_hash: ContentHash::from_bytes([0xc4; 32]),
            storage_key: "0f".repeat(16),
            encryption: None,
        });
        let entries = recipients
            .iter()
            .map(|(recipient, address)| RecipientEntry {
                recipient: *recipient,
                mailbox: Mailbox {
                    address: address.clone(),
                    display_name: None,
                },
                via_list: None,
                access_token_hash: token_hash(self.link_key.token(id, *recipient).as_str()),
            })
            .collect();
        let submitted = Event::DeliverySubmitted(DeliverySubmitted {
            delivery: id,
            sender: self.sender,
            recipients: entries,
            documents: vec![document],
            subject: "Signed contract".to_owned(),
            message: "Please find the contract attached.".to_owned(),
            options: DeliveryOptions {
                priority: Priority::Normal,
                encrypt_at_rest: false,
                receipt_requested: spec.receipt_requested,
                expires_at: spec.expires_at.map(|instant| ZonedTime {
                    instant,
                    zone: "Europe/Paris".to_owned(),
                }),
                deliver_at: None,
                billing_code: None,
                access_password_hash: spec.password.then(|| PASSWORD_HASH.to_owned()),
                require_tls: false,
                postmark: false,
            },
        });
        let actor = Actor::Account(self.sender);
        self.append(chain, actor, vec![uploaded, submitted]).await;
        let released = Event::DeliveryReleased(DeliveryReleased { delivery: id });
        self.append(
            chain,
            Actor::System(SystemComponent::Scheduler),
            vec![released],
        )
        .await;

        Delivery {
            id,
            chain,
            document,
            recipients,
        }
    }

    async fn download(&self, delivery: &Delivery, recipient: RecipientId) {
        let event = Event::DocumentDownloaded(DocumentDownloaded {
            delivery: delivery.id,
            recipient,
            document: delivery.document,
            bytes: 48_213,
        });
        let actor = Actor::Recipient {
            delivery: delivery.id,
            recipient,
        };
        self.append(delivery.chain, actor, vec![event]).await;
    }

    fn events(&self, chain: ChainId) -> Vec<StoredEvent> {
        self.ledger()
            .read(chain, Position::ZERO, usize::MAX)
            .unwrap()
    }

    /// Returns the notification events of one recipient, in ledger order.
    fn notification_events(&self, delivery: &Delivery, recipient: RecipientId) -> Vec<StoredEvent> {
        self.events(delivery.chain)
            .into_iter()
            .filter(|stored| match &stored.envelope.event {
                Event::NotificationAttempted(e) => {
                    e.delivery == delivery.id && e.recipient == recipient
                }
                Event::NotificationSent(e) => e.delivery == delivery.id && e.recipient == recipient,
                Event::NotificationDeferred(e) => {
                    e.delivery == delivery.id && e.recipient == recipient
                }
                Event::NotificationFailed(e) => {
                    e.delivery == delivery.id && e.recipient == recipient
                }
                Event::ReceiptSent(e) => e.delivery == delivery.id && e.recipient == recipient,
                _ => false,
            })
            .collect()
    }

    fn steps(&self, delivery: &Delivery, recipient: RecipientId) -> Vec<Step> {
        self.notification_events(delivery, recipient)
            .iter()
            .map(|stored| match &stored.envelope.event {
                Event::NotificationAttempted(e) => Step::Attempted(e.kind, e.attempt),
                Event::NotificationSent(e) => Step::Sent(e.attempt),
                Event::NotificationDeferred(e) => Step::Deferred(e.attempt),
                Event::NotificationFailed(e) => Step::Failed(e.attempt),
                Event::ReceiptSent(_) => Step::ReceiptSent,
                other => unreachable!("filtered out: {other:?}"),
            })
            .collect()
    }

    /// Waits until the recipient's last notification event is `step`.
    async fn wait_for_step(&self, delivery: &Delivery, recipient: RecipientId, step: Step) {
        let started = Instant::now();
        loop {
            let steps = self.steps(delivery, recipient);
            if steps.last() == Some(&step) {
                return;
            }
            assert!(
                started.elapsed() < WAIT_LIMIT,
                "waited {WAIT_LIMIT:?} for {step:?}; the recipient's events are {steps:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn assert_chains_verify(&self) {
        let ledger = self.ledger();
        for chain in ledger.chains() {
            let report = ledger
                .verify_chain(chain, Position::ZERO, None, &|_| {})
                .unwrap();
            assert_eq!(report.first_break, None, "chain {chain}");
            assert_eq!(report.verified, ledger.next_position(chain).unwrap().get());
        }
    }
}

/// Starts a relay on loopback that accepts connections and never replies, so every
/// send to it stays in progress. Returns its URL and a channel that receives one
/// message per accepted connection.
fn start_silent_relay() -> (String, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (connected, connections) = mpsc::channel();
    std::thread::spawn(move || {
        let mut open_connections = Vec::new();
        for stream in listener.incoming() {
            open_connections.push(stream);
            if connected.send(()).is_err() {
                break;
            }
        }
    });
    (format!("smtp://127.0.0.1:{port}?timeout=60"), connections)
}

/// Returns the attempts notification ids and Message-IDs of `events`.
fn attempts(events: &[StoredEvent]) -> Vec<(NotificationId, String)> {
    events
        .iter()
        .filter_map(|stored| match &stored.envelope.event {
            Event::NotificationAttempted(e) => Some((e.notification, e.message_id.clone())),
            _ => None,
        })
        .collect()
}

fn deferral_times(events: &[StoredEvent]) -> Vec<Timestamp> {
    events
        .iter()
        .filter_map(|stored| match &stored.envelope.event {
            Event::NotificationDeferred(e) => Some(e.retry_at),
            _ => None,
        })
        .collect()
}

fn failure_reason(events: &[StoredEvent]) -> String {
    events
        .iter()
        .find_map(|stored| match &stored.envelope.event {
            Event::NotificationFailed(e) => Some(e.reason.clone()),
            _ => None,
        })
        .expect("a NotificationFailed event")
}

fn after(start: Timestamp, seconds: i64) -> Timestamp {
    Timestamp::from_micros(start.as_micros() + seconds * 1_000_000)
}

fn body_text(bytes: &[u8]) -> String {
    let message = MessageParser::default().parse(bytes).unwrap();
    message.body_text(0).unwrap().into_owned()
}

fn message_id_header(bytes: &[u8]) -> String {
    let message = MessageParser::default().parse(bytes).unwrap();
    format!("<{}>", message.message_id().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_recipients_get_own_links() {
    let harness = Harness::new().await;
    let server = SmtpServer::start();
    let addresses = [
        "anna@recipient.test",
        "ben@recipient.test",
        "chloe@recipient.test",
    ];
    let delivery = harness
        .deliver(DeliverySpec {
            password: true,
            ..DeliverySpec::to(&addresses)
        })
        .await;

    let running = harness.start(smtp_mailer(&server.url("")));
    for (recipient, _) in &delivery.recipients {
        harness
            .wait_for_step(&delivery, *recipient, Step::Sent(1))
            .await;
    }
    running.stop().await;

    let saved = server.saved_messages();
    assert_eq!(saved.len(), 3);
    for (recipient, address) in &delivery.recipients {
        let steps = harness.steps(&delivery, *recipient);
        assert_eq!(
            steps,
            [
                Step::Attempted(NotificationKind::Consignment, 1),
                Step::Sent(1)
            ]
        );

        let events = harness.notification_events(&delivery, *recipient);
        let attempted = &events[0].envelope;
        assert_eq!(attempted.actor, Actor::System(SystemComponent::Notifier));
        assert_eq!(
            attempted.idempotency_key.as_ref().unwrap().as_str(),
            format!("notify/{}/{recipient}/consignment", delivery.id)
        );

        let received: Vec<_> = saved
            .iter()
            .filter(|message| message.envelope["rcpt_tos"] == serde_json::json!([address]))
            .collect();
        assert_eq!(received.len(), 1, "{address}");
        let bytes = &received[0].bytes;
        assert_eq!(message_id_header(bytes), attempts(&events)[0].1);

        let body = body_text(bytes);
        let own_link = format!(
            "{PUBLIC_BASE_URL}/d/{}",
            harness.link_key.token(delivery.id, *recipient).as_str()
        );
        assert!(
            body.contains(&own_link),
            "{address} has no own link:\n{body}"
        );
        for (other, _) in delivery.recipients.iter().filter(|(id, _)| id != recipient) {
            let other_token = harness.link_key.token(delivery.id, *other);
            assert!(
                !body.contains(other_token.as_str()),
                "{address} got another link"
            );
        }
        assert!(
            body.contains("protected this delivery with a password"),
            "{body}"
        );
        let raw = String::from_utf8_lossy(bytes);
        assert!(
            !raw.contains(PASSWORD_HASH),
            "{address} got the password hash"
        );
        assert!(
            !body.contains(PASSWORD_HASH),
            "{address} got the password hash"
        );
    }
    harness.assert_chains_verify();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_recipient_retried_until_expiry() {
    let harness = Harness::new().await;
    let server = SmtpServer::start();
    let delivery = harness
        .deliver(DeliverySpec {
            expires_at: Some(after(START, 120)),
            ..DeliverySpec::to(&["defer@recipient.test"])
        })
        .await;
    let recipient = delivery.recipient("defer@recipient.test");

    let running = harness.start(smtp_mailer(&server.url("")));
    harness
        .wait_for_step(&delivery, recipient, Step::Deferred(1))
        .await;
    harness.clock.advance(Duration::from_secs(30));
    harness
        .wait_for_step(&delivery, recipient, Step::Deferred(2))
        .await;
    harness.clock.advance(Duration::from_secs(60));
    harness
        .wait_for_step(&delivery, recipient, Step::Failed(3))
        .await;
    running.stop().await;

    let consignment = NotificationKind::Consignment;
    assert_eq!(
        harness.steps(&delivery, recipient),
        [
            Step::Attempted(consignment, 1),
            Step::Deferred(1),
            Step::Attempted(consignment, 2),
            Step::Deferred(2),
            Step::Attempted(consignment, 3),
            Step::Failed(3),
        ]
    );
    let events = harness.notification_events(&delivery, recipient);
    let attempts = attempts(&events);
    assert_eq!(attempts.len(), 3);
    assert!(
        attempts.iter().all(|attempt| *attempt == attempts[0]),
        "{attempts:?}"
    );
    assert_eq!(
        deferral_times(&events),
        [after(START, 30), after(START, 90)]
    );
    let reason = failure_reason(&events);
    assert!(reason.contains("451"), "{reason}");
    assert!(
        reason.contains("expires at 2027-01-15T08:02:00Z"),
        "{reason}"
    );
    assert!(server.saved_messages().is_empty());
    harness.assert_chains_verify();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn give_up_period_ends_retries() {
    let harness = Harness::new().await;
    let server = SmtpServer::start();
    let delivery = harness
        .deliver(DeliverySpec::to(&["defer-long@recipient.test"]))
        .await;
    let recipient = delivery.recipient("defer-long@recipient.test");

    let running = harness.start_with(smtp_mailer(&server.url("")), |config| {
        config.give_up_after = Duration::from_secs(60);
    });
    harness
        .wait_for_step(&delivery, recipient, Step::Deferred(1))
        .await;
    harness.clock.advance(Duration::from_secs(30));
    harness
        .wait_for_step(&delivery, recipient, Step::Failed(2))
        .await;
    running.stop().await;

    let consignment = NotificationKind::Consignment;
    assert_eq!(
        harness.steps(&delivery, recipient),
        [
            Step::Attempted(consignment, 1),
            Step::Deferred(1),
            Step::Attempted(consignment, 2),
            Step::Failed(2),
        ]
    );
    let reason = failure_reason(&harness.notification_events(&delivery, recipient));
    assert!(
        reason.contains("retry period ends at 2027-01-15T08:01:00Z"),
        "{reason}"
    );
    harness.assert_chains_verify();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_recipient_fails_once() {
    let harness = Harness::new().await;
    let server = SmtpServer::start();
    let addresses = [
        "reject@recipient.test",
        "drop@recipient.test",
        "anna@recipient.test",
    ];
    let delivery = harness.deliver(DeliverySpec::to(&addresses)).await;
    let rejected = delivery.recipient("reject@recipient.test");
    let dropped = delivery.recipient("drop@recipient.test");
    let accepted = delivery.recipient("anna@recipient.test");

    let running = harness.start(smtp_mailer(&server.url("")));
    harness
        .wait_for_step(&delivery, rejected, Step::Failed(1))
        .await;
    harness
        .wait_for_step(&delivery, dropped, Step::Deferred(1))
        .await;
    harness
        .wait_for_step(&delivery, accepted, Step::Sent(1))
        .await;
    running.stop().await;

    let consignment = NotificationKind::Consignment;
    assert_eq!(
        harness.steps(&delivery, rejected),
        [Step::Attempted(consignment, 1), Step::Failed(1)]
    );
    let reason = failure_reason(&harness.notification_events(&delivery, rejected));
    assert!(reason.contains("550"), "{reason}");
    assert_eq!(
        harness.steps(&delivery, dropped),
        [Step::Attempted(consignment, 1), Step::Deferred(1)]
    );
    assert_eq!(server.saved_messages().len(), 1);
    harness.assert_chains_verify();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsendable_address_recorded_as_failure() {
    let harness = Harness::new().await;
    let server = SmtpServer::start();
    let delivery = harness.deliver(DeliverySpec::to(&["no-at-sign"])).await;
    let recipient = delivery.recipient("no-at-sign");

    let running = harness.start(smtp_mailer(&server.url("")));
    harness
        .wait_for_step(&delivery, recipient, Step::Failed(1))
        .await;
    running.stop().await;

    assert_eq!(
        harness.steps(&delivery, recipient),
        [
            Step::Attempted(NotificationKind::Consignment, 1),
            Step::Failed(1)
        ]
    );
    let reason = failure_reason(&harness.notification_events(&delivery, recipient));
    assert!(reason.contains("could not be composed"), "{reason}");
    assert!(reason.contains("no-at-sign"), "{reason}");
    assert!(server.saved_messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resends_unfinished_attempt() {
    let mut harness = Harness::new().await;
    let delivery = harness
        .deliver(DeliverySpec::to(&["anna@recipient.test"]))
        .await;
    let recipient = delivery.recipient("anna@recipient.test");

    // The first run crashes with the attempt recorded and the send in progress.
    let (silent_url, connections) = start_silent_relay();
    let running = harness.start(smtp_mailer(&silent_url));
    harness
        .wait_for_step(
            &delivery,
            recipient,
            Step::Attempted(NotificationKind::Consignment, 1),
        )
        .await;
    connections
        .recv_timeout(WAIT_LIMIT)
        .expect("the send reached the relay");
    running.crash().await;
    let recorded = attempts(&harness.notification_events(&delivery, recipient));

    harness.reopen().await;
    let server = SmtpServer::start();
    let running = harness.start(smtp_mailer(&server.url("")));
    harness
        .wait_for_step(&delivery, recipient, Step::Sent(1))
        .await;
    running.stop().await;

    assert_eq!(
        harness.steps(&delivery, recipient),
        [
            Step::Attempted(NotificationKind::Consignment, 1),
            Step::Sent(1)
        ]
    );
    assert_eq!(
        attempts(&harness.notification_events(&delivery, recipient)),
        recorded
    );
    let saved = server.saved_messages();
    assert_eq!(saved.len(), 1);
    assert_eq!(message_id_header(&saved[0].bytes), recorded[0].1);
    harness.assert_chains_verify();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_downloads_give_one_receipt() {
    let harness = Harness::new().await;
    let server = SmtpServer::start();
    let delivery = harness
        .deliver(DeliverySpec {
            receipt_requested: true,
            ..DeliverySpec::to(&["anna@recipient.test"])
        })
        .await;
    let recipient = delivery.recipient("anna@recipient.test");

    let running = harness.start(smtp_mailer(&server.url("")));
    harness
        .wait_for_step(&delivery, recipient, Step::Sent(1))
        .await;
    harness.download(&delivery, recipient).await;
    harness.download(&delivery, recipient).await;
    harness
        .wait_for_step(&delivery, recipient, Step::ReceiptSent)
        .await;
    // A later delivery on the same chain: once its e-mail is out, the dispatcher has
    // folded both downloads and had every chance to send a second receipt.
    let later = harness
        .deliver(DeliverySpec {
            chain: Some(delivery.chain),
            ..DeliverySpec::to(&["ben@recipient.test"])
        })
        .await;
    let later_recipient = later.recipient("ben@recipient.test");
    harness
        .wait_for_step(&later, later_recipient, Step::Sent(1))
        .await;
    running.stop().await;

    assert_eq!(
        harness.steps(&delivery, recipient),
        [
            Step::Attempted(NotificationKind::Consignment, 1),
            Step::Sent(1),
            Step::Attempted(NotificationKind::Receipt, 1),
            Step::Sent(1),
            Step::ReceiptSent,
        ]
    );
    let events = harness.notification_events(&delivery, recipient);
    let (sent, receipt) = (&events[3].envelope, &events[4].envelope);
    assert_eq!(sent.command, receipt.command, "one append request");
    assert_eq!(receipt.position, sent.position.next());

    let saved = server.saved_messages();
    let receipts: Vec<_> = saved
        .iter()
        .filter(|message| message.envelope["rcpt_tos"] == serde_json::json!([SENDER_ADDRESS]))
        .collect();
    assert_eq!(receipts.len(), 1);
    assert_eq!(
        message_id_header(&receipts[0].bytes),
        attempts(&events)[1].1
    );
    let parsed = MessageParser::default().parse(&receipts[0].bytes).unwrap();
    assert_eq!(
        parsed.subject(),
        Some("Receipt: anna@recipient.test downloaded Vertrag über 契約.pdf")
    );
    assert_eq!(saved.len(), 3);
    harness.assert_chains_verify();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawn_and_expired_deliveries_send_nothing() {
    let harness = Harness::new().await;
    let server = SmtpServer::start();
    let withdrawn = harness
        .deliver(DeliverySpec::to(&["anna@recipient.test"]))
        .await;
    let withdrawal = Event::DeliveryWithdrawn(DeliveryWithdrawn {
        delivery: withdrawn.id,
        by: harness.sender,
        reason: "wrong document".to_owned(),
    });
    harness
        .append(
            withdrawn.chain,
            Actor::Account(harness.sender),
            vec![withdrawal],
        )
        .await;
    let expired = harness
        .deliver(DeliverySpec::to(&["ben@recipient.test"]))
        .await;
    let expiry = Event::DeliveryExpired(DeliveryExpired {
        delivery: expired.id,
    });
    harness
        .append(
            expired.chain,
            Actor::System(SystemComponent::Scheduler),
            vec![expiry],
        )
        .await;
    let past_expiry = harness
        .deliver(DeliverySpec {
            expires_at: Some(START),
            ..DeliverySpec::to(&["chloe@recipient.test"])
        })
        .await;
    let control = harness
        .deliver(DeliverySpec::to(&["dora@recipient.test"]))
        .await;

    let running = harness.start(smtp_mailer(&server.url("")));
    let control_recipient = control.recipient("dora@recipient.test");
    harness
        .wait_for_step(&control, control_recipient, Step::Sent(1))
        .await;
    running.stop().await;

    for delivery in [&withdrawn, &expired, &past_expiry] {
        let (recipient, address) = &delivery.recipients[0];
        assert_eq!(harness.steps(delivery, *recipient), [], "{address}");
    }
    let saved = server.saved_messages();
    assert_eq!(saved.len(), 1);
    assert_eq!(
        saved[0].envelope["rcpt_tos"],
        serde_json::json!(["dora@recipient.test"])
    );
    harness.assert_chains_verify();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawal_ends_deferred_notification() {
    let harness = Harness::new().await;
    let server = SmtpServer::start();
    let delivery = harness
        .deliver(DeliverySpec::to(&["defer@recipient.test"]))
        .await;
    let recipient = delivery.recipient("defer@recipient.test");

    let running = harness.start(smtp_mailer(&server.url("")));
    harness
        .wait_for_step(&delivery, recipient, Step::Deferred(1))
        .await;
    let withdrawal = Event::DeliveryWithdrawn(DeliveryWithdrawn {
        delivery: delivery.id,
        by: harness.sender,
        reason: "wrong recipient".to_owned(),
    });
    harness
        .append(
            delivery.chain,
            Actor::Account(harness.sender),
            vec![withdrawal],
        )
        .await;
    harness
        .wait_for_step(&delivery, recipient, Step::Failed(1))
        .await;
    running.stop().await;

    assert_eq!(
        harness.steps(&delivery, recipient),
        [
            Step::Attempted(NotificationKind::Consignment, 1),
            Step::Deferred(1),
            Step::Failed(1),
        ]
    );
    let reason = failure_reason(&harness.notification_events(&delivery, recipient));
    assert!(reason.contains("withdrawn"), "{reason}");
    harness.assert_chains_verify();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_waits_for_sender_account() {
    let harness = Harness::empty();
    let server = SmtpServer::start();
    let delivery = harness
        .deliver(DeliverySpec {
            chain: Some(ChainId::new(2)),
            ..DeliverySpec::to(&["anna@recipient.test"])
        })
        .await;
    let recipient = delivery.recipient("anna@recipient.test");

    let running = harness.start(smtp_mailer(&server.url("")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(harness.steps(&delivery, recipient), []);
    harness.open_account().await;
    harness
        .wait_for_step(&delivery, recipient, Step::Sent(1))
        .await;
    running.stop().await;

    assert_eq!(
        harness.steps(&delivery, recipient),
        [
            Step::Attempted(NotificationKind::Consignment, 1),
            Step::Sent(1)
        ]
    );
    harness.assert_chains_verify();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_mailer_writes_each_email() {
    let harness = Harness::new().await;
    let outbox = tempfile::tempdir().unwrap();
    let addresses = ["anna@recipient.test", "ben@recipient.test"];
    let delivery = harness.deliver(DeliverySpec::to(&addresses)).await;

    let running = harness.start(Mailer::outbox(outbox.path()).unwrap());
    for (recipient, _) in &delivery.recipients {
        harness
            .wait_for_step(&delivery, *recipient, Step::Sent(1))
            .await;
    }
    running.stop().await;

    for (recipient, address) in &delivery.recipients {
        let events = harness.notification_events(&delivery, *recipient);
        let (notification, message_id) = attempts(&events).remove(0);
        let file_name = format!("{notification}.eml");
        let Event::NotificationSent(sent) = &events[1].envelope.event else {
            panic!(
                "expected NotificationSent, got {:?}",
                events[1].envelope.event
            );
        };
        assert_eq!(sent.server_reply, file_name);

        let bytes = std::fs::read(outbox.path().join(&file_name)).unwrap();
        assert_eq!(message_id_header(&bytes), message_id);
        let token = harness.link_key.token(delivery.id, *recipient);
        assert!(body_text(&bytes).contains(token.as_str()), "{address}");
    }
    assert_eq!(std::fs::read_dir(outbox.path()).unwrap().count(), 2);
    harness.assert_chains_verify();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_are_bounded() {
    let harness = Harness::new().await;
    let addresses = [
        "a@recipient.test",
        "b@recipient.test",
        "c@recipient.test",
        "d@recipient.test",
    ];
    let delivery = harness.deliver(DeliverySpec::to(&addresses)).await;
    let (silent_url, connections) = start_silent_relay();

    let running = harness.start_with(smtp_mailer(&silent_url), |config| {
        config.max_concurrent_sends = 2;
    });
    for _ in 0..2 {
        connections
            .recv_timeout(WAIT_LIMIT)
            .expect("a send reached the relay");
    }
    let third = connections.recv_timeout(Duration::from_millis(500));
    running.crash().await;

    assert!(
        third.is_err(),
        "a third send started while two were in progress"
    );
    let sent = delivery
        .recipients
        .iter()
        .filter(|(recipient, _)| {
            harness
                .steps(&delivery, *recipient)
                .contains(&Step::Sent(1))
        })
        .count();
    assert_eq!(sent, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_record_one_attempt() {
    let harness = Harness::new().await;
    let server = SmtpServer::start();
    let addresses = [
        "anna@recipient.test",
        "ben@recipient.test",
        "chloe@recipient.test",
    ];
    let delivery = harness.deliver(DeliverySpec::to(&addresses)).await;

    let first = harness.start(smtp_mailer(&server.url("")));
    let second = harness.start(smtp_mailer(&server.url("")));
    for (recipient, _) in &delivery.recipients {
        harness
            .wait_for_step(&delivery, *recipient, Step::Sent(1))
            .await;
    }
    first.stop().await;
    second.stop().await;

    let saved = server.saved_messages();
    for (recipient, address) in &delivery.recipients {
        assert_eq!(
            harness.steps(&delivery, *recipient),
            [
                Step::Attempted(NotificationKind::Consignment, 1),
                Step::Sent(1)
            ],
            "{address}"
        );
        // Both dispatchers may send the recorded attempt; a duplicate carries the same
        // Message-ID, so the receiving side can drop it.
        let message_id = &attempts(&harness.notification_events(&delivery, *recipient))[0].1;
        let received: Vec<_> = saved
            .iter()
            .filter(|message| message.envelope["rcpt_tos"] == serde_json::json!([address]))
            .collect();
        assert!(
            (1..=2).contains(&received.len()),
            "{address}: {}",
            received.len()
        );
        for message in received {
            assert_eq!(&message_id_header(&message.bytes), message_id, "{address}");
        }
    }
    harness.assert_chains_verify();
}
