//! Golden vectors: one fixed instance of every event type, its stored bytes and its hash.
//!
//! A failure here means a stored encoding changed, which would make existing ledgers
//! unreadable or unverifiable. Run with `CONSIGN_UPDATE_GOLDEN=1` only when adding a new
//! event type, never to paper over a change to an existing one.

use std::path::PathBuf;

use consign_schemas::events::*;
use consign_schemas::{
    AccountId, Actor, ChainId, CommandId, DeliveryId, DocumentId, Envelope, EventId, EventKind,
    Hash32, IdempotencyKey, NotificationId, Position, RecipientId, SCHEMA_VERSION, SchemaError,
    Timestamp, genesis_hash, hash_stored_event,
};

const DELIVERY: DeliveryId = DeliveryId::from_bytes([0x11; 16]);
const ACCOUNT: AccountId = AccountId::from_bytes([0x22; 16]);
const RECIPIENT: RecipientId = RecipientId::from_bytes([0x33; 16]);
const DOCUMENT: DocumentId = DocumentId::from_bytes([0x44; 16]);
const NOTIFICATION: NotificationId = NotificationId::from_bytes([0x55; 16]);
const TIME: Timestamp = Timestamp::from_micros(1_796_400_000_123_456);

fn hash(byte: u8) -> Hash32 {
    Hash32::from_bytes([byte; 32])
}

fn mailbox() -> Mailbox {
    Mailbox {
        address: "zoë@example.org".to_owned(),
        display_name: Some("Zoë Łukasiewicz 山田".to_owned()),
    }
}

fn sample(kind: EventKind) -> Event {
    match kind {
        EventKind::AccountOpened => Event::AccountOpened(AccountOpened {
            account: ACCOUNT,
            login: "alice".to_owned(),
            display_name: "Alice Martin".to_owned(),
            email: "alice@example.com".to_owned(),
            role: Role::Sender,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        }),
        EventKind::CredentialChanged => Event::CredentialChanged(CredentialChanged {
            account: ACCOUNT,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdDI$aGFzaDI".to_owned(),
        }),
        EventKind::MailingListDefined => Event::MailingListDefined(MailingListDefined {
            account: ACCOUNT,
            name: "board".to_owned(),
            members: vec![mailbox()],
        }),
        EventKind::DocumentUploaded => Event::DocumentUploaded(DocumentUploaded {
            document: DOCUMENT,
            account: ACCOUNT,
            file_name: "contrat signé.pdf".to_owned(),
            media_type: "application/pdf".to_owned(),
            size: 104_857_601,
            content_hash: hash(0xaa),
            storage_key: "blobs/aa/aaaa".to_owned(),
            encryption: Some(EncryptionDescriptor {
                algorithm: "XChaCha20-Poly1305/STREAM-64KiB".to_owned(),
                key_id: "kek-1".to_owned(),
                wrapped_key: vec![1, 2, 3, 4],
                nonce_prefix: vec![9; 19],
            }),
        }),
        EventKind::DeliverySubmitted => Event::DeliverySubmitted(DeliverySubmitted {
            delivery: DELIVERY,
            sender: ACCOUNT,
            recipients: vec![RecipientEntry {
                recipient: RECIPIENT,
                mailbox: mailbox(),
                via_list: Some("board".to_owned()),
                access_token_hash: hash(0xbb),
            }],
            documents: vec![DOCUMENT],
            subject: "Notice of termination".to_owned(),
            message: "Please find the notice attached.\r\nRegards".to_owned(),
            options: DeliveryOptions {
                priority: Priority::Urgent,
                encrypt_at_rest: true,
                receipt_requested: true,
                expires_at: Some(ZonedTime {
                    instant: Timestamp::from_micros(1_797_000_000_000_000),
                    zone: "Europe/Paris".to_owned(),
                }),
                deliver_at: None,
                billing_code: Some("LEGAL-42".to_owned()),
                access_password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$eA$eQ".to_owned()),
                require_tls: true,
                postmark: true,
            },
        }),
        EventKind::PostmarkIssued => Event::PostmarkIssued(PostmarkIssued {
            delivery: DELIVERY,
            submission_chain: ChainId::new(3),
            submission_position: Position::new(41),
            submission_hash: hash(0xcc),
            time: TIME,
            document_hashes: vec![hash(0xaa)],
            key_id: "postmark-2026-12".to_owned(),
            signature: vec![0x5a; 64],
        }),
        EventKind::DeliveryReleased => {
            Event::DeliveryReleased(DeliveryReleased { delivery: DELIVERY })
        }
        EventKind::NotificationAttempted => Event::NotificationAttempted(NotificationAttempted {
            notification: NOTIFICATION,
            delivery: DELIVERY,
            recipient: RECIPIENT,
            kind: NotificationKind::Consignment,
            message_id: "<55555555@consign.example>".to_owned(),
            attempt: 1,
        }),
        EventKind::NotificationSent => Event::NotificationSent(NotificationSent {
            notification: NOTIFICATION,
            delivery: DELIVERY,
            recipient: RECIPIENT,
            attempt: 2,
            server_reply: "250 2.0.0 Ok: queued as 4F2A".to_owned(),
        }),
        EventKind::NotificationDeferred => Event::NotificationDeferred(NotificationDeferred {
            notification: NOTIFICATION,
            delivery: DELIVERY,
            recipient: RECIPIENT,
            attempt: 1,
            reason: "451 4.7.1 greylisted".to_owned(),
            retry_at: Timestamp::from_micros(1_796_400_060_000_000),
        }),
        EventKind::NotificationFailed => Event::NotificationFailed(NotificationFailed {
            notification: NOTIFICATION,
            delivery: DELIVERY,
            recipient: RECIPIENT,
            attempt: 3,
            reason: "550 5.1.1 mailbox unavailable".to_owned(),
        }),
        EventKind::DeliveryOpened => Event::DeliveryOpened(DeliveryOpened {
            delivery: DELIVERY,
            recipient: RECIPIENT,
        }),
        EventKind::AccessDenied => Event::AccessDenied(AccessDenied {
            delivery: DELIVERY,
            recipient: RECIPIENT,
            reason: DenialReason::WrongPassword,
        }),
        EventKind::DocumentDownloaded => Event::DocumentDownloaded(DocumentDownloaded {
            delivery: DELIVERY,
            recipient: RECIPIENT,
            document: DOCUMENT,
            bytes: 104_857_601,
        }),
        EventKind::ReceiptSent => Event::ReceiptSent(ReceiptSent {
            delivery: DELIVERY,
            recipient: RECIPIENT,
            notification: NOTIFICATION,
            message_id: "<receipt-1@consign.example>".to_owned(),
        }),
        EventKind::DeliveryExpired => {
            Event::DeliveryExpired(DeliveryExpired { delivery: DELIVERY })
        }
        EventKind::DeliveryWithdrawn => Event::DeliveryWithdrawn(DeliveryWithdrawn {
            delivery: DELIVERY,
            by: ACCOUNT,
            reason: "sent to the wrong party".to_owned(),
        }),
        EventKind::DocumentsPurged => Event::DocumentsPurged(DocumentsPurged {
            delivery: DELIVERY,
            documents: vec![DOCUMENT],
        }),
        EventKind::CheckpointSigned => Event::CheckpointSigned(CheckpointSigned {
            chain: ChainId::new(3),
            tree_size: 1_000_000,
            root_hash: hash(0xdd),
            key_id: "checkpoint-2026-12".to_owned(),
            signature: vec![0x6b; 64],
        }),
    }
}

fn envelope(event: Event) -> Envelope {
    Envelope {
        schema_version: SCHEMA_VERSION,
        event_id: EventId::from_bytes([0x66; 16]),
        chain: ChainId::new(3),
        position: Position::new(42),
        previous: genesis_hash(ChainId::new(3)),
        time: TIME,
        command: CommandId::from_bytes([0x77; 16]),
        idempotency_key: Some(IdempotencyKey::new("submit-7f3a").unwrap()),
        actor: Actor::Recipient {
            delivery: DELIVERY,
            recipient: RECIPIENT,
        },
        event,
    }
}

fn golden_path(kind: EventKind) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{}.txt", kind.name()))
}

fn render(bytes: &[u8]) -> String {
    format!(
        "bytes {}\nhash {}\n",
        hex::encode(bytes),
        hash_stored_event(bytes)
    )
}

#[test]
fn golden_vectors_match_every_event_type() {
    let update = std::env::var_os("CONSIGN_UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();

    for kind in EventKind::ALL {
        let envelope = envelope(sample(kind));
        let bytes = envelope.encode().unwrap();
        let rendered = render(&bytes);
        let path = golden_path(kind);

        if update && !path.exists() {
            std::fs::write(&path, &rendered).unwrap();
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("golden vector {} is missing: {error}", path.display()));
        if expected != rendered {
            mismatches.push(kind.name());
        }

        let decoded = Envelope::decode(&bytes).unwrap();
        assert_eq!(
            decoded,
            envelope,
            "{} does not survive a round trip",
            kind.name()
        );
    }

    assert!(
        mismatches.is_empty(),
        "stored encoding changed for {mismatches:?}"
    );
}

#[test]
fn golden_bytes_decode_to_the_sample() {
    for kind in EventKind::ALL {
        let text = std::fs::read_to_string(golden_path(kind)).unwrap();
        let bytes_hex = text.lines().next().unwrap().strip_prefix("bytes ").unwrap();
        let bytes = hex::decode(bytes_hex).unwrap();

        let decoded = Envelope::decode(&bytes).unwrap();
        assert_eq!(decoded.event.kind(), kind);
        assert_eq!(decoded, envelope(sample(kind)));
    }
}

#[test]
fn genesis_differs_per_chain() {
    assert_ne!(genesis_hash(ChainId::new(0)), genesis_hash(ChainId::new(1)));
}

#[test]
fn event_hash_is_domain_separated() {
    let bytes = envelope(sample(EventKind::DeliveryReleased))
        .encode()
        .unwrap();
    let plain = blake3::hash(&bytes);
    assert_ne!(hash_stored_event(&bytes).as_bytes(), plain.as_bytes());
}

#[test]
fn future_schema_version_is_rejected() {
    let mut bytes = envelope(sample(EventKind::DeliveryReleased))
        .encode()
        .unwrap();
    // The version is the first field, a varint: 1 encodes as the single byte 0x01.
    assert_eq!(bytes[0], 1);
    bytes[0] = 2;

    let error = Envelope::decode(&bytes).unwrap_err();
    assert_eq!(
        error,
        SchemaError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    );
    assert!(error.to_string().contains("upgrade consign"), "{error}");
}

#[test]
fn unknown_event_variant_is_an_error() {
    let bytes = envelope(sample(EventKind::DeliveryReleased))
        .encode()
        .unwrap();
    let released = envelope(sample(EventKind::DeliveryReleased));
    // The payload is the variant index, then the delivery id as a length byte and 16 bytes.
    let prefix_len = bytes.len() - 16 - 1 - 1;
    assert_eq!(bytes[prefix_len], 6, "variant index of DeliveryReleased");
    let mut future = bytes.clone();
    future[prefix_len] = 120;

    assert!(matches!(
        Envelope::decode(&future),
        Err(SchemaError::Decode { .. })
    ));
    assert_eq!(Envelope::decode(&bytes).unwrap(), released);
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = envelope(sample(EventKind::DeliveryExpired))
        .encode()
        .unwrap();
    bytes.push(0);
    assert_eq!(
        Envelope::decode(&bytes),
        Err(SchemaError::TrailingBytes { count: 1 })
    );
}

#[test]
fn human_readable_forms() {
    let json = serde_json::to_value(envelope(sample(EventKind::DeliveryReleased))).unwrap();
    assert_eq!(json["previous"].as_str().unwrap().len(), 64);
    assert_eq!(json["event_id"], "66666666-6666-6666-6666-666666666666");
    assert_eq!(json["actor"]["recipient"]["delivery"], DELIVERY.to_string());
}

mod decoding_arbitrary_bytes {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Envelope::decode(&bytes);
        }

        #[test]
        fn flipped_byte_changes_hash(index in 0usize..400, flip in 1u8..=255) {
            let bytes = envelope(sample(EventKind::DeliverySubmitted)).encode().unwrap();
            let index = index % bytes.len();
            let mut altered = bytes.clone();
            altered[index] ^= flip;
            prop_assert_ne!(hash_stored_event(&altered), hash_stored_event(&bytes));
        }
    }
}
