//! Fixed sample data and small random builders: people, file names, subjects, time
//! zones, SMTP replies, identifiers and placeholder hashes.
//!
//! The texts use several scripts (Latin with diacritics, Greek, Cyrillic, Arabic,
//! Hebrew, Devanagari, Thai, Chinese, Japanese, Korean) so that every consumer of the
//! ledger meets non-ASCII and right-to-left text. Every random value is drawn from the
//! caller's seeded generator, never from the operating system, so runs repeat.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use rand::Rng;

use consign_schemas::events::EncryptionDescriptor;
use consign_schemas::{Hash32, NotificationId, Timestamp};

pub(super) const SECOND: i64 = 1_000_000;
pub(super) const MINUTE: i64 = 60 * SECOND;
pub(super) const HOUR: i64 = 60 * MINUTE;
pub(super) const DAY: i64 = 24 * HOUR;

/// People who hold accounts, receive deliveries and sit on mailing lists: a display
/// name and the local part of their e-mail address.
pub(super) const PEOPLE: &[(&str, &str)] = &[
    ("Zoë Ångström", "zoe.angstrom"),
    ("José Núñez", "jose.nunez"),
    ("Łukasz Wójcik", "lukasz.wojcik"),
    ("Ayşe Yılmaz", "ayse.yilmaz"),
    ("Nguyễn Thị Hoa", "hoa.nguyen"),
    // A comma is special in RFC 5322, so this display name must be quoted in a header.
    ("O'Brien, Siobhán", "siobhan.obrien"),
    ("Νίκος Παπαδόπουλος", "nikos.papadopoulos"),
    ("Анна Смирнова", "anna.smirnova"),
    ("ليلى حداد", "layla.haddad"),
    ("דנה לוי", "dana.levi"),
    ("प्रिया शर्मा", "priya.sharma"),
    ("สมชาย ใจดี", "somchai.jaidee"),
    ("王小明", "wang.xiaoming"),
    ("山田 太郎", "taro.yamada"),
    ("김민준", "minjun.kim"),
    ("Margaret Okafor", "m.okafor"),
    ("Jean-Baptiste Lefèvre", "jb.lefevre"),
    ("Björn Þórsson", "bjorn.thorsson"),
    // Only the display name is outside ASCII: the API refuses a non-ASCII local part,
    // which would need an SMTPUTF8 server.
    ("Renée Faÿ", "renee.fay"),
    ("Ahmed Al-Sayed", "ahmed.alsayed"),
];

/// Domains of the contact book: reserved example domains only (RFC 2606).
pub(super) const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "mail.example.com",
    "legal.example.org",
    "partners.example.net",
];

/// Domain of the accounts' own addresses.
pub(super) const ACCOUNT_DOMAIN: &str = "consign.example";

/// IANA zone names that senders type dates in, including zones with half-hour and
/// quarter-hour offsets and zones south of the equator.
pub(super) const ZONES: &[&str] = &[
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Sao_Paulo",
    "America/St_Johns",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Sydney",
    "Africa/Nairobi",
    "UTC",
];

/// Client file names with their media types.
pub(super) const FILES: &[(&str, &str)] = &[
    ("Contrat de bail – signé.pdf", "application/pdf"),
    (
        "Vertragsänderung_2026.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    ("契約書_最終版.pdf", "application/pdf"),
    (
        "Отчёт за 1 квартал.xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    ("عقد العمل.pdf", "application/pdf"),
    ("הצעת מחיר.pdf", "application/pdf"),
    (
        "परियोजना योजना.pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    ("見積書 (改訂版).pdf", "application/pdf"),
    (
        "Προσφορά 2026.odt",
        "application/vnd.oasis.opendocument.text",
    ),
    ("회의록.pdf", "application/pdf"),
    ("invoice #4411.pdf", "application/pdf"),
    ("scan 2026-03-14 09.41.17.jpeg", "image/jpeg"),
    ("Q1 results.csv", "text/csv"),
    ("site plans.tar.gz", "application/gzip"),
    ("statement.pdf.p7s", "application/pkcs7-signature"),
    ("README", "application/octet-stream"),
];

pub(super) const SUBJECTS: &[&str] = &[
    "Signed lease agreement",
    "Contrat de travail à signer",
    "Angebot Nr. 2026-114",
    "見積書の送付について",
    "Документы для подписания",
    "عرض السعر المحدث",
    "Notice of termination",
    "Board minutes, March meeting",
    "Προσφορά έργου",
    "Re: invoice #4411 (corrected)",
];

pub(super) const MESSAGES: &[&str] = &[
    "",
    "Please find the signed documents attached.",
    "Veuillez trouver ci-joint les documents signés.\nCordialement,",
    "Anbei die überarbeitete Fassung. Bitte bis Freitag prüfen.",
    "ご確認のほどよろしくお願いいたします。",
    "Прошу подписать и вернуть до конца недели.",
    "يرجى مراجعة المستندات المرفقة.",
    "The password was sent to you by text message.",
];

pub(super) const MAILING_LIST_NAMES: &[&str] = &[
    "Board members",
    "Conseil d'administration",
    "Auditores externos",
    "取締役会",
    "Tenants – Building B",
    "Payroll",
];

const BILLING_PREFIXES: &[&str] = &["LEGAL", "HR", "FIN", "SALES", "OPS", "IT", "PROC", "RND"];

pub(super) const WITHDRAWAL_REASONS: &[&str] = &[
    "Sent to the wrong recipient",
    "Attachment was the wrong version",
    "Envoyé par erreur",
    "Falscher Anhang, bitte ignorieren",
    "Superseded by a corrected delivery",
];

/// SMTP replies to a message that will be retried.
pub(super) const TEMPORARY_FAILURES: &[&str] = &[
    "421 4.7.0 Try again later, closing connection",
    "450 4.2.1 The user you are trying to contact is receiving mail too quickly",
    "451 4.7.1 Greylisted, please try again in 300 seconds",
    "452 4.2.2 Mailbox full",
    "connection to mx1.example.net:25 timed out after 30 s",
];

/// SMTP replies to a message that will not be retried.
pub(super) const PERMANENT_FAILURES: &[&str] = &[
    "550 5.1.1 Recipient address rejected: User unknown in virtual mailbox table",
    "550 5.7.1 Message rejected by recipient's policy",
    "552 5.2.2 Mailbox full and over quota",
    "553 5.1.3 Invalid recipient address",
    "554 5.7.1 Relay access denied",
];

/// Failure reason when the sender required TLS and the receiving server offered none.
pub(super) const TLS_UNAVAILABLE: &str =
    "TLS required by the sender, but the receiving server does not offer STARTTLS";

/// Words that pad the reason of size-targeted events, so the padding compresses like
/// text rather than like a run of one byte.
pub(super) const PADDING_WORDS: &[&str] = &[
    "recalled",
    "delivery",
    "wrong",
    "version",
    "recipient",
    "attachment",
    "sender",
    "request",
    "replaced",
    "by",
    "the",
    "a",
    "corrected",
    "document",
    "please",
    "ignore",
];

/// Algorithm name of documents encrypted at rest.
const ENCRYPTION_ALGORITHM: &str = "XChaCha20-Poly1305/STREAM-64KiB";

/// Identifiers of the key-encryption keys that wrap document keys, oldest first.
const KEY_ENCRYPTION_KEYS: &[&str] = &["kek-2025-07", "kek-2026-01"];

/// Key id on postmarks and checkpoints whose signature bytes are random, not a signature.
pub(super) const PLACEHOLDER_KEY_ID: &str = "workload-placeholder-ed25519";

/// Length of an Ed25519 signature.
pub(super) const SIGNATURE_LEN: usize = 64;

/// Returns the `index`-th billing code, for example `LEGAL-2026-001`.
pub(super) fn billing_code(index: u32) -> String {
    let prefix_count = BILLING_PREFIXES.len() as u32;
    let prefix = BILLING_PREFIXES[(index % prefix_count) as usize];
    let number = index / prefix_count + 1;
    format!("{prefix}-2026-{number:03}")
}

/// Draws 16 bytes shaped as a version 4 UUID.
pub(super) fn uuid_bytes(rng: &mut impl Rng) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    bytes
}

pub(super) fn random_hash(rng: &mut impl Rng) -> Hash32 {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes);
    Hash32::from_bytes(bytes)
}

pub(super) fn random_bytes(rng: &mut impl Rng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rng.fill(bytes.as_mut_slice());
    bytes
}

/// Builds an argon2id PHC string with a random salt and random hash bytes.
///
/// The parameters (19 MiB of memory, 2 passes, 1 lane) are the minimum that the OWASP
/// Password Storage Cheat Sheet recommends for argon2id. No password hashes to this
/// value: it has only the format and length of a real one.
pub(super) fn argon2id_phc(rng: &mut impl Rng) -> String {
    let salt = random_bytes(rng, 16);
    let hash = random_bytes(rng, 32);
    format!(
        "$argon2id$v=19$m=19456,t=2,p=1${}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(hash)
    )
}

/// Builds an encryption descriptor with a random wrapped key and nonce prefix.
pub(super) fn encryption_descriptor(rng: &mut impl Rng) -> EncryptionDescriptor {
    let key_id = KEY_ENCRYPTION_KEYS[rng.random_range(0..KEY_ENCRYPTION_KEYS.len())];
    EncryptionDescriptor {
        algorithm: ENCRYPTION_ALGORITHM.to_owned(),
        key_id: key_id.to_owned(),
        // A 32-byte data key sealed with XChaCha20-Poly1305: 24-byte nonce, key, 16-byte tag.
        wrapped_key: random_bytes(rng, 24 + 32 + 16),
        // STREAM over a 24-byte nonce keeps 5 bytes for the chunk counter and last-chunk flag.
        nonce_prefix: random_bytes(rng, 24 - 5),
    }
}

/// Returns the RFC 5322 Message-ID of a notification: every retry reuses it.
pub(super) fn message_id(notification: NotificationId) -> String {
    let hex: String = notification
        .as_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("<{hex}@notify.{ACCOUNT_DOMAIN}>")
}

/// Draws the final reply of an SMTP server that accepted a message, in Postfix's form.
pub(super) fn accepted_reply(rng: &mut impl Rng) -> String {
    let queue_id: u64 = rng.random_range(0x10_0000_0000..0xff_ffff_ffff);
    format!("250 2.0.0 Ok: queued as {queue_id:010X}")
}

/// Draws a document size from 2 KiB to 64 MiB: a power-of-two range chosen uniformly,
/// then a size uniform within it, so the median is 384 KiB.
pub(super) fn document_size(rng: &mut impl Rng) -> u64 {
    let exponent = rng.random_range(11..26);
    rng.random_range(1u64 << exponent..1u64 << (exponent + 1))
}

/// Returns the blob-store key of a document: content-addressed by its hash.
pub(super) fn storage_key(content_hash: &Hash32) -> String {
    let hex = content_hash.to_hex();
    format!("blobs/{}/{}/{hex}", &hex[..2], &hex[2..4])
}

/// Picks one of `texts` and returns it as an owned string.
pub(super) fn pick_text(rng: &mut impl Rng, texts: &[&str]) -> String {
    texts[rng.random_range(0..texts.len())].to_owned()
}

/// Returns `time` moved by `micros`.
pub(super) fn later(time: Timestamp, micros: i64) -> Timestamp {
    Timestamp::from_micros(time.as_micros() + micros)
}

/// Rounds a time up to the next whole hour, as a sender picking a date and hour would.
pub(super) fn round_up_to_hour(time: Timestamp) -> Timestamp {
    let micros = time.as_micros();
    Timestamp::from_micros(micros + (HOUR - micros.rem_euclid(HOUR)) % HOUR)
}

/// Picks an item with a bias towards the start of the list: index `min(a, b)` of two
/// uniform draws, so the first item is about `2n - 1` times as likely as the last.
pub(super) fn pick_skewed<'a, T>(rng: &mut impl Rng, items: &'a [T]) -> &'a T {
    let first = rng.random_range(0..items.len());
    let second = rng.random_range(0..items.len());
    &items[first.min(second)]
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn argon2id_phc_has_standard_shape() {
        let mut rng = StdRng::seed_from_u64(1);
        let phc = argon2id_phc(&mut rng);
        let fields: Vec<&str> = phc.split('$').collect();

        assert_eq!(fields.len(), 6, "{phc}");
        assert_eq!(fields[1], "argon2id");
        assert_eq!(fields[2], "v=19");
        assert_eq!(fields[3], "m=19456,t=2,p=1");
        // Unpadded base64 of 16 and 32 bytes.
        assert_eq!(fields[4].len(), 22);
        assert_eq!(fields[5].len(), 43);
    }

    #[test]
    fn uuid_bytes_have_version_4_bits() {
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..100 {
            let bytes = uuid_bytes(&mut rng);
            assert_eq!(bytes[6] >> 4, 4);
            assert_eq!(bytes[8] >> 6, 0b10);
        }
    }

    #[test]
    fn billing_codes_are_distinct() {
        let codes: std::collections::HashSet<String> = (0..100).map(billing_code).collect();

        assert_eq!(codes.len(), 100);
        assert_eq!(billing_code(0), "LEGAL-2026-001");
        assert_eq!(billing_code(9), "HR-2026-002");
    }

    #[test]
    fn round_up_to_hour_keeps_whole_hours() {
        let whole = Timestamp::from_micros(10 * HOUR);
        let inside = Timestamp::from_micros(10 * HOUR + 1);

        assert_eq!(round_up_to_hour(whole), whole);
        assert_eq!(round_up_to_hour(inside), Timestamp::from_micros(11 * HOUR));
    }

    #[test]
    fn document_size_stays_in_range() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..1_000 {
            let size = document_size(&mut rng);
            assert!((2_048..64 << 20).contains(&size), "{size}");
        }
    }
}
