//! The sender's choices for a new delivery (options, documents, recipients) and the
//! way the delivery ends within the run, all drawn before the delivery is planned.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use consign_schemas::events::{
    DeliveryOptions, DocumentUploaded, Priority, RecipientEntry, ZonedTime,
};
use consign_schemas::{AccountId, DocumentId, RecipientId, Timestamp};

use super::catalog::{self, DAY, HOUR, MINUTE};
use super::world::{Account, World};

// Rates in percent. They are estimates for a practice that sends contracts, HR letters
// and invoices, not measurements of a real service.

/// Of deliveries: options chosen by the sender.
const POSTMARK_PERCENT: u32 = 30;
const ENCRYPT_PERCENT: u32 = 45;
const RECEIPT_PERCENT: u32 = 40;
const EXPIRY_PERCENT: u32 = 55;
const DELIVERY_DATE_PERCENT: u32 = 8;
const BILLING_CODE_PERCENT: u32 = 70;
const PASSWORD_PERCENT: u32 = 25;
const TLS_PERCENT: u32 = 30;
/// Of deliveries whose sender owns a mailing list: addressed to one of them.
const MAILING_LIST_PERCENT: u32 = 15;
/// Of deliveries: sent while the sender is away from their usual time zone.
const TRAVEL_PERCENT: u32 = 10;

/// Of deliveries: recalled by the sender.
const WITHDRAWAL_PERCENT: u32 = 5;
/// Of deliveries without expiry or withdrawal: content removed by the retention policy.
const RETENTION_PURGE_PERCENT: u32 = 3;
/// Age at which the retention policy purges content.
const RETENTION: i64 = 30 * DAY;

/// The end of a delivery within the run, with its simulated time.
pub(super) enum Ending {
    Withdrawn { at: i64 },
    Expired { at: i64 },
    RetentionPurge { at: i64 },
}

pub(super) fn draw_options(
    rng: &mut StdRng,
    world: &World,
    sender: &Account,
    submitted_at: i64,
) -> DeliveryOptions {
    let zone = if rng.random_ratio(TRAVEL_PERCENT, 100) {
        catalog::pick_text(rng, catalog::ZONES)
    } else {
        sender.zone.to_owned()
    };
    let priority = match rng.random_range(0..100) {
        0..80 => Priority::Normal,
        80..95 => Priority::High,
        _ => Priority::Urgent,
    };

    // Senders type whole hours. Expiry comes at least two days after the release.
    let deliver_at = rng
        .random_ratio(DELIVERY_DATE_PERCENT, 100)
        .then(|| submitted_at + rng.random_range(HOUR..3 * DAY))
        .map(|at| catalog::round_up_to_hour(Timestamp::from_micros(at)));
    let release_at = deliver_at.map_or(submitted_at, Timestamp::as_micros);
    let expires_at = rng
        .random_ratio(EXPIRY_PERCENT, 100)
        .then(|| release_at + rng.random_range(2 * DAY..30 * DAY))
        .map(|at| catalog::round_up_to_hour(Timestamp::from_micros(at)));

    let encrypt_at_rest = rng.random_ratio(ENCRYPT_PERCENT, 100);
    let receipt_requested = rng.random_ratio(RECEIPT_PERCENT, 100);
    let billing_code =
        if !world.billing_codes.is_empty() && rng.random_ratio(BILLING_CODE_PERCENT, 100) {
            world.billing_codes.choose(rng).cloned()
        } else {
            None
        };
    let access_password_hash = rng
        .random_ratio(PASSWORD_PERCENT, 100)
        .then(|| catalog::argon2id_phc(rng));
    let require_tls = rng.random_ratio(TLS_PERCENT, 100);
    let postmark = rng.random_ratio(POSTMARK_PERCENT, 100);

    let zoned = |instant| ZonedTime {
        instant,
        zone: zone.clone(),
    };
    DeliveryOptions {
        priority,
        encrypt_at_rest,
        receipt_requested,
        expires_at: expires_at.map(zoned),
        deliver_at: deliver_at.map(zoned),
        billing_code,
        access_password_hash,
        require_tls,
        postmark,
    }
}

pub(super) fn draw_uploads(
    rng: &mut StdRng,
    sender: AccountId,
    encrypt: bool,
) -> Vec<DocumentUploaded> {
    let count = match rng.random_range(0..100) {
        0..60 => 1,
        60..85 => 2,
        85..95 => 3,
        _ => rng.random_range(4..=6),
    };

    let mut uploads = Vec::with_capacity(count);
    for _ in 0..count {
        let (file_name, media_type) = catalog::FILES[rng.random_range(0..catalog::FILES.len())];
        let content_hash = catalog::random_hash(rng);
        uploads.push(DocumentUploaded {
            document: DocumentId::from_bytes(catalog::uuid_bytes(rng)),
            account: sender,
            file_name: file_name.to_owned(),
            media_type: media_type.to_owned(),
            size: catalog::document_size(rng),
            content_hash,
            storage_key: catalog::storage_key(&content_hash),
            encryption: encrypt.then(|| catalog::encryption_descriptor(rng)),
        });
    }
    uploads
}

pub(super) fn draw_recipients(
    rng: &mut StdRng,
    world: &World,
    sender: AccountId,
) -> Vec<RecipientEntry> {
    let own_lists = world.lists_of(sender);
    let mut mailboxes = Vec::new();
    if !own_lists.is_empty() && rng.random_ratio(MAILING_LIST_PERCENT, 100) {
        let list = &world.lists[own_lists[rng.random_range(0..own_lists.len())]];
        for member in &list.members {
            mailboxes.push((member.clone(), Some(list.name.clone())));
        }

        // Sometimes one more person is added by hand.
        if rng.random_bool(0.3)
            && let Some(extra) = world.contacts.choose(rng)
            && !list.members.iter().any(|m| m.address == extra.address)
        {
            mailboxes.push((extra.clone(), None));
        }
    } else {
        let count = match rng.random_range(0..100) {
            0..55 => 1,
            55..85 => rng.random_range(2..=3),
            _ => rng.random_range(4..=8),
        };
        for contact in world.contacts.choose_multiple(rng, count) {
            mailboxes.push((contact.clone(), None));
        }
    }

    let mut recipients = Vec::with_capacity(mailboxes.len());
    for (mailbox, via_list) in mailboxes {
        recipients.push(RecipientEntry {
            recipient: RecipientId::from_bytes(catalog::uuid_bytes(rng)),
            mailbox,
            via_list,
            access_token_hash: catalog::random_hash(rng),
        });
    }
    recipients
}

pub(super) fn draw_ending(
    rng: &mut StdRng,
    submitted_at: i64,
    options: &DeliveryOptions,
) -> Option<Ending> {
    let expires_at = options
        .expires_at
        .as_ref()
        .map(|expires_at| expires_at.instant.as_micros());

    if rng.random_ratio(WITHDRAWAL_PERCENT, 100) {
        // Most recalls follow a mistake noticed within the hour. The rest come before
        // the expiry, or within a week.
        let latest = expires_at.map_or(7 * DAY, |expires_at| expires_at - submitted_at);
        let delay = if rng.random_bool(0.6) {
            rng.random_range(MINUTE..HOUR)
        } else {
            rng.random_range(HOUR..latest.max(HOUR + 1))
        };
        return Some(Ending::Withdrawn {
            at: submitted_at + delay,
        });
    }
    if let Some(at) = expires_at {
        return Some(Ending::Expired { at });
    }
    rng.random_ratio(RETENTION_PURGE_PERCENT, 100)
        .then_some(Ending::RetentionPurge {
            at: submitted_at + RETENTION,
        })
}
