//! Unit tests of the dispatcher's fold and of the work it lists as due.

use consign_ledger::StoredEvent;
use consign_schemas::events::{
    AccountOpened, DeliveryExpired, DeliveryOptions, DeliveryReleased, DeliverySubmitted,
    DeliveryWithdrawn, DocumentDownloaded, DocumentUploaded, Mailbox, NotificationAttempted,
    NotificationDeferred, NotificationFailed, NotificationKind, NotificationSent, Priority,
    ReceiptSent, RecipientEntry, Role, ZonedTime,
};
use consign_schemas::{
    AccountId, Actor, ChainId, CommandId, ContentHash, DeliveryId, DocumentId, Envelope, Event,
    EventId, Hash32, NotificationId, Position, RecipientId, SCHEMA_VERSION, SystemComponent,
    Timestamp,
};

use super::{DispatchState, DueWork, NotificationStatus};

const DELIVERY_CHAIN: ChainId = ChainId::new(1);
const SECOND: i64 = 1_000_000;

/// A small ledger: one account on chain 0, one delivery with two recipients and one
/// document on chain 1, fed into a state event by event.
struct Fixture {
    state: DispatchState,
    next: [u64; 2],
    account: AccountId,
    document: DocumentId,
    delivery: DeliveryId,
    recipients: [RecipientId; 2],
}

impl Fixture {
    fn new() -> Self {
        Self {
            state: DispatchState::new(),
            next: [0, 0],
            account: AccountId::random(),
            document: DocumentId::random(),
            delivery: DeliveryId::random(),
            recipients: [RecipientId::random(), RecipientId::random()],
        }
    }

    fn apply_at(&mut self, chain: ChainId, time: i64, event: Event) {
        let slot = &mut self.next[chain.get() as usize];
        let stored = StoredEvent {
            envelope: Envelope {
                schema_version: SCHEMA_VERSION,
                event_id: EventId::random(),
                chain,
                position: Position::new(*slot),
                previous: Hash32::from_bytes([0; 32]),
                time: Timestamp::from_micros(time),
                command: CommandId::random(),
                idempotency_key: None,
                actor: Actor::System(SystemComponent::WorkloadGenerator),
                event,
            },
            hash: Hash32::from_bytes([0; 32]),
            bytes: Vec::new(),
        };
        *slot += 1;
        self.state.apply(&stored);
    }

    fn apply(&mut self, event: Event) {
        self.apply_at(DELIVERY_CHAIN, 0, event);
    }

    fn open_account(&mut self) {
        let event = Event::AccountOpened(AccountOpened {
            account: self.account,
            login: "jg".to_owned(),
            display_name: "Jürgen Groß".to_owned(),
            email: "juergen@sender.test".to_owned(),
            role: Role::Sender,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        });
        self.apply_at(ChainId::new(0), 0, event);
    }

    fn upload(&mut self) {
        self.apply(Event::DocumentUploaded(DocumentUploaded {
            document: self.document,
            account: self.account,
            file_name: "contract.pdf".to_owned(),
            media_type: "application/pdf".to_owned(),
            size: 1234,
            content_hash: ContentHash::from_bytes([7; 32]),
            storage_key: "00".repeat(16),
            encryption: None,
        }));
    }

    fn submit(&mut self, expires_at: Option<i64>, receipt_requested: bool) {
        let recipients = self
            .recipients
            .iter()
            .enumerate()
            .map(|(index, recipient)| RecipientEntry {
                recipient: *recipient,
                mailbox: Mailbox {
                    address: format!("r{index}@recipient.test"),
                    display_name: None,
                },
                via_list: None,
                access_token_hash: Hash32::from_bytes([1; 32]),
            })
            .collect();
        self.apply(Event::DeliverySubmitted(DeliverySubmitted {
            delivery: self.delivery,
            sender: self.account,
            recipients,
            documents: vec![self.document],
            subject: "Contract".to_owned(),
            message: String::new(),
            options: DeliveryOptions {
                priority: Priority::Normal,
                encrypt_at_rest: false,
                receipt_requested,
                expires_at: expires_at.map(|micros| ZonedTime {
                    instant: Timestamp::from_micros(micros),
                    zone: "UTC".to_owned(),
                }),
                deliver_at: None,
                billing_code: None,
                access_password_hash: None,
                require_tls: false,
                postmark: false,
            },
        }));
    }

    fn release(&mut self) {
        self.apply(Event::DeliveryReleased(DeliveryReleased {
            delivery: self.delivery,
        }));
    }

    /// Folds everything a released delivery needs, account included.
    fn released(expires_at: Option<i64>, receipt_requested: bool) -> Self {
        let mut fixture = Self::new();
        fixture.open_account();
        fixture.upload();
        fixture.submit(expires_at, receipt_requested);
        fixture.release();
        fixture
    }

    fn attempt(
        &mut self,
        recipient: usize,
        kind: NotificationKind,
        id: NotificationId,
        attempt: u32,
    ) {
        self.attempt_at(0, recipient, kind, id, attempt);
    }

    /// Records an attempt with the sequencer time `time`.
    fn attempt_at(
        &mut self,
        time: i64,
        recipient: usize,
        kind: NotificationKind,
        id: NotificationId,
        attempt: u32,
    ) {
        let event = Event::NotificationAttempted(NotificationAttempted {
            notification: id,
            delivery: self.delivery,
            recipient: self.recipients[recipient],
            kind,
            message_id: format!("<{id}@consign.test>"),
            attempt,
        });
        self.apply_at(DELIVERY_CHAIN, time, event);
    }

    fn defer(&mut self, recipient: usize, id: NotificationId, attempt: u32, retry_at: i64) {
        self.apply(Event::NotificationDeferred(NotificationDeferred {
            notification: id,
            delivery: self.delivery,
            recipient: self.recipients[recipient],
            attempt,
            reason: "451 4.2.0 try again later".to_owned(),
            retry_at: Timestamp::from_micros(retry_at),
        }));
    }

    fn sent(&mut self, recipient: usize, id: NotificationId, attempt: u32) {
        self.apply(Event::NotificationSent(NotificationSent {
            notification: id,
            delivery: self.delivery,
            recipient: self.recipients[recipient],
            attempt,
            server_reply: "250 ok".to_owned(),
        }));
    }

    fn download(&mut self, recipient: usize, time: i64) {
        let event = Event::DocumentDownloaded(DocumentDownloaded {
            delivery: self.delivery,
            recipient: self.recipients[recipient],
            document: self.document,
            bytes: 1234,
        });
        self.apply_at(DELIVERY_CHAIN, time, event);
    }

    fn first_attempt(&self, recipient: usize, kind: NotificationKind) -> DueWork {
        DueWork::FirstAttempt {
            delivery: self.delivery,
            recipient: self.recipients[recipient],
            kind,
        }
    }

    fn due_work(&self, now: i64) -> Vec<DueWork> {
        self.state.due(Timestamp::from_micros(now)).work
    }
}

#[test]
fn released_delivery_waits_for_sender_account() {
    let mut fixture = Fixture::new();
    fixture.upload();
    fixture.submit(None, false);
    fixture.release();
    assert_eq!(fixture.due_work(0), vec![]);

    fixture.open_account();

    assert_eq!(
        fixture.due_work(0),
        vec![
            fixture.first_attempt(0, NotificationKind::Consignment),
            fixture.first_attempt(1, NotificationKind::Consignment),
        ]
    );
}

#[test]
fn unreleased_delivery_has_no_work() {
    let mut fixture = Fixture::new();
    fixture.open_account();
    fixture.upload();
    fixture.submit(None, false);

    assert_eq!(fixture.due_work(0), vec![]);
}

#[test]
fn attempt_without_outcome_is_sent_again() {
    let mut fixture = Fixture::released(None, false);
    let id = NotificationId::random();
    fixture.attempt(0, NotificationKind::Consignment, id, 1);

    let work = fixture.due_work(0);

    assert_eq!(
        work,
        vec![
            DueWork::Send {
                notification: id,
                attempt: 1
            },
            fixture.first_attempt(1, NotificationKind::Consignment),
        ]
    );
}

#[test]
fn sent_notification_has_no_work() {
    let mut fixture = Fixture::released(None, false);
    let id = NotificationId::random();
    fixture.attempt(0, NotificationKind::Consignment, id, 1);
    fixture.sent(0, id, 1);

    assert_eq!(
        fixture.due_work(0),
        vec![fixture.first_attempt(1, NotificationKind::Consignment)]
    );
    assert_eq!(
        fixture.state.notification(id).unwrap().status,
        NotificationStatus::Sent
    );
}

#[test]
fn deferred_notification_is_retried_at_retry_time() {
    let mut fixture = Fixture::released(None, false);
    let id = NotificationId::random();
    fixture.attempt(0, NotificationKind::Consignment, id, 1);
    fixture.defer(0, id, 1, 30 * SECOND);
    fixture.attempt(
        1,
        NotificationKind::Consignment,
        NotificationId::random(),
        1,
    );
    let retry = DueWork::Retry {
        notification: id,
        attempt: 2,
    };

    let early = fixture.state.due(Timestamp::from_micros(29 * SECOND));
    assert!(!early.work.contains(&retry), "{:?}", early.work);
    assert_eq!(early.next_due, Some(Timestamp::from_micros(30 * SECOND)));

    let on_time = fixture.state.due(Timestamp::from_micros(30 * SECOND));
    assert!(on_time.work.contains(&retry), "{:?}", on_time.work);
    assert_eq!(on_time.next_due, None);
}

#[test]
fn retry_attempt_becomes_a_send() {
    let mut fixture = Fixture::released(None, false);
    let id = NotificationId::random();
    fixture.attempt(0, NotificationKind::Consignment, id, 1);
    fixture.defer(0, id, 1, 30 * SECOND);
    fixture.attempt(0, NotificationKind::Consignment, id, 2);

    let work = fixture.due_work(30 * SECOND);

    assert!(
        work.contains(&DueWork::Send {
            notification: id,
            attempt: 2
        }),
        "{work:?}"
    );
    let record = fixture.state.notification(id).unwrap();
    assert_eq!(record.attempt, 2);
    assert_eq!(record.status, NotificationStatus::Attempted);
}

#[test]
fn outcome_of_an_older_attempt_is_ignored() {
    let mut fixture = Fixture::released(None, false);
    let id = NotificationId::random();
    fixture.attempt(0, NotificationKind::Consignment, id, 1);
    fixture.defer(0, id, 1, 30 * SECOND);
    fixture.attempt(0, NotificationKind::Consignment, id, 2);
    fixture.sent(0, id, 1);

    assert_eq!(
        fixture.state.notification(id).unwrap().status,
        NotificationStatus::Attempted
    );
}

#[test]
fn withdrawn_delivery_gets_no_attempts_and_ends_retries() {
    let mut fixture = Fixture::released(None, false);
    let id = NotificationId::random();
    fixture.attempt(0, NotificationKind::Consignment, id, 1);
    fixture.defer(0, id, 1, 30 * SECOND);
    fixture.apply(Event::DeliveryWithdrawn(DeliveryWithdrawn {
        delivery: fixture.delivery,
        by: fixture.account,
        reason: "sent to the wrong people".to_owned(),
    }));

    let work = fixture.due_work(0);

    assert_eq!(work.len(), 1, "{work:?}");
    assert!(
        matches!(&work[0], DueWork::Abandon { notification, attempt: 1, reason }
            if *notification == id && reason.contains("withdrawn")),
        "{work:?}"
    );
}

#[test]
fn expired_delivery_gets_no_attempts() {
    let by_event = {
        let mut fixture = Fixture::released(None, false);
        fixture.apply(Event::DeliveryExpired(DeliveryExpired {
            delivery: fixture.delivery,
        }));
        fixture.due_work(0)
    };
    let by_time = Fixture::released(Some(10 * SECOND), false).due_work(10 * SECOND);

    assert_eq!(by_event, vec![]);
    assert_eq!(by_time, vec![]);
}

#[test]
fn first_download_calls_for_one_receipt() {
    let mut fixture = Fixture::released(None, true);
    let consignment = NotificationId::random();
    fixture.attempt(0, NotificationKind::Consignment, consignment, 1);
    fixture.sent(0, consignment, 1);
    fixture.download(0, 5 * SECOND);
    fixture.download(0, 9 * SECOND);

    let receipt = fixture.first_attempt(0, NotificationKind::Receipt);
    let work = fixture.due_work(10 * SECOND);
    assert_eq!(work.iter().filter(|work| **work == receipt).count(), 1);

    let id = NotificationId::random();
    fixture.attempt(0, NotificationKind::Receipt, id, 1);
    assert!(!fixture.due_work(10 * SECOND).contains(&receipt));
    assert!(fixture.due_work(10 * SECOND).contains(&DueWork::Send {
        notification: id,
        attempt: 1
    }));

    fixture.apply(Event::ReceiptSent(ReceiptSent {
        delivery: fixture.delivery,
        recipient: fixture.recipients[0],
        notification: id,
        message_id: format!("<{id}@consign.test>"),
    }));
    assert_eq!(
        fixture.due_work(10 * SECOND),
        vec![fixture.first_attempt(1, NotificationKind::Consignment)]
    );
}

#[test]
fn download_without_receipt_request_has_no_receipt() {
    let mut fixture = Fixture::released(None, false);
    fixture.download(0, 5 * SECOND);

    let receipt = fixture.first_attempt(0, NotificationKind::Receipt);
    assert!(!fixture.due_work(10 * SECOND).contains(&receipt));
}

#[test]
fn failed_notification_is_final() {
    let mut fixture = Fixture::released(None, false);
    let id = NotificationId::random();
    fixture.attempt(0, NotificationKind::Consignment, id, 1);
    fixture.apply(Event::NotificationFailed(NotificationFailed {
        notification: id,
        delivery: fixture.delivery,
        recipient: fixture.recipients[0],
        attempt: 1,
        reason: "550 no such user".to_owned(),
    }));
    fixture.attempt(0, NotificationKind::Consignment, id, 2);

    let record = fixture.state.notification(id).unwrap();
    assert_eq!(record.status, NotificationStatus::Failed);
    assert_eq!(record.attempt, 1);
}

#[test]
fn apply_skips_folded_positions() {
    let mut fixture = Fixture::released(None, false);
    let before = fixture.state.next_position(DELIVERY_CHAIN);
    fixture.next[DELIVERY_CHAIN.get() as usize] = 0;

    fixture.attempt(
        0,
        NotificationKind::Consignment,
        NotificationId::random(),
        1,
    );

    assert_eq!(fixture.state.next_position(DELIVERY_CHAIN), before);
    assert_eq!(
        fixture.state.notification_for(
            fixture.delivery,
            fixture.recipients[0],
            NotificationKind::Consignment
        ),
        None
    );
}

#[test]
fn receipt_is_due_after_withdrawal() {
    let mut fixture = Fixture::released(None, true);
    let consignment = NotificationId::random();
    fixture.attempt(0, NotificationKind::Consignment, consignment, 1);
    fixture.sent(0, consignment, 1);
    fixture.download(0, 5 * SECOND);
    fixture.apply(Event::DeliveryWithdrawn(DeliveryWithdrawn {
        delivery: fixture.delivery,
        by: fixture.account,
        reason: "recalled".to_owned(),
    }));

    assert_eq!(
        fixture.due_work(10 * SECOND),
        vec![fixture.first_attempt(0, NotificationKind::Receipt)]
    );
}

#[test]
fn foreign_attempt_waits_for_its_sender() {
    let mut fixture = Fixture::released(None, false);
    fixture.state.foreign_attempt_grace = std::time::Duration::from_secs(90);
    let id = NotificationId::random();
    fixture.attempt(0, NotificationKind::Consignment, id, 1);
    let send = DueWork::Send {
        notification: id,
        attempt: 1,
    };

    let early = fixture.state.due(Timestamp::from_micros(89 * SECOND));
    assert!(!early.work.contains(&send), "{:?}", early.work);
    assert_eq!(early.next_due, Some(Timestamp::from_micros(90 * SECOND)));

    let late = fixture.due_work(90 * SECOND);
    assert!(late.contains(&send), "{late:?}");
}

#[test]
fn foreign_retry_waits_from_its_own_time() {
    let mut fixture = Fixture::released(None, false);
    fixture.state.foreign_attempt_grace = std::time::Duration::from_secs(90);
    let id = NotificationId::random();
    fixture.attempt(0, NotificationKind::Consignment, id, 1);
    fixture.defer(0, id, 1, 30 * SECOND);
    fixture.attempt_at(100 * SECOND, 0, NotificationKind::Consignment, id, 2);
    let send = DueWork::Send {
        notification: id,
        attempt: 2,
    };

    assert!(!fixture.due_work(189 * SECOND).contains(&send));
    assert!(fixture.due_work(190 * SECOND).contains(&send));
}

#[test]
fn own_attempt_is_sent_at_once() {
    let mut fixture = Fixture::released(None, false);
    fixture.state.foreign_attempt_grace = std::time::Duration::from_secs(90);
    let id = NotificationId::random();
    fixture.state.note_own_attempt(id, 1);
    fixture.attempt(0, NotificationKind::Consignment, id, 1);

    let work = fixture.due_work(0);

    assert!(
        work.contains(&DueWork::Send {
            notification: id,
            attempt: 1
        }),
        "{work:?}"
    );
}

#[test]
fn attempt_ahead_of_clock_is_sent_without_grace() {
    let mut fixture = Fixture::released(None, false);
    let id = NotificationId::random();
    fixture.attempt_at(3600 * SECOND, 0, NotificationKind::Consignment, id, 1);

    let work = fixture.due_work(0);

    assert!(
        work.contains(&DueWork::Send {
            notification: id,
            attempt: 1
        }),
        "{work:?}"
    );
}
