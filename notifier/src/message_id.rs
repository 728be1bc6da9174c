//! RFC 5322 Message-IDs: the configured domain on their right side, their creation from
//! a notification id, and the check applied to every Message-ID before it enters a header.
//!
//! A Message-ID is fixed when the notification's attempt is recorded, so every retry of
//! one notification carries the same Message-ID and a receiving server can drop the
//! duplicates.

use std::fmt;

use consign_schemas::NotificationId;

use crate::compose::ComposeError;

/// Maximum length of a Message-ID in bytes, angle brackets included. RFC 5322 sets no
/// limit, but a line of a header must stay within 998 bytes, and real ids stay far below.
const MAX_MESSAGE_ID_LEN: usize = 250;

/// The domain written to the right of `@` in every Message-ID, such as `mail.example.com`.
///
/// Valid by construction: 1 to 253 bytes of dot-separated labels made of ASCII letters,
/// digits and hyphens, or an IPv6 address as an RFC 5322 domain literal (`[::1]`), so it
/// can never break the header it is written into.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct MessageIdDomain(String);

impl MessageIdDomain {
    /// Checks and wraps a domain name.
    ///
    /// # Errors
    ///
    /// [`ComposeError::InvalidMessageIdDomain`] when `domain` is empty, longer than 253
    /// bytes, or has an empty label or a character other than an ASCII letter, digit,
    /// hyphen or dot, unless it is an IPv6 address, with or without brackets.
    pub fn new(domain: &str) -> Result<Self, ComposeError> {
        let unbracketed = domain
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(domain);
        if let Ok(address) = unbracketed.parse::<std::net::Ipv6Addr>() {
            return Ok(Self(format!("[{address}]")));
        }

        let labels_valid = domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        });
        if domain.is_empty() || domain.len() > 253 || !labels_valid {
            return Err(ComposeError::InvalidMessageIdDomain {
                domain: domain.to_owned(),
            });
        }
        Ok(Self(domain.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageIdDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Creates the Message-ID of a notification: `<{notification id}@{domain}>`.
///
/// The result includes the angle brackets, as `NotificationAttempted::message_id` stores
/// it and as the `Message-ID` header carries it. The same notification id always gives
/// the same Message-ID.
pub fn new_message_id(notification: NotificationId, domain: &MessageIdDomain) -> String {
    format!("<{notification}@{domain}>")
}

/// Returns an error unless `message_id` has the form `<left@right>` with both sides
/// non-empty and made of printable ASCII other than whitespace, angle brackets and a
/// second `@`.
///
/// The ids come back from the ledger as plain strings, so this check runs again at
/// composition even for ids that [`new_message_id`] made.
pub(crate) fn validate_message_id(message_id: &str) -> Result<(), ComposeError> {
    let invalid = || ComposeError::InvalidMessageId {
        message_id: message_id.to_owned(),
    };

    if message_id.len() > MAX_MESSAGE_ID_LEN {
        return Err(invalid());
    }
    let inner = message_id
        .strip_prefix('<')
        .and_then(|rest| rest.strip_suffix('>'))
        .ok_or_else(invalid)?;
    let (left, right) = inner.split_once('@').ok_or_else(invalid)?;

    let part_valid = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|byte| byte.is_ascii_graphic() && !matches!(byte, b'<' | b'>' | b'@'))
    };
    if !part_valid(left) || !part_valid(right) {
        return Err(invalid());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_has_notification_and_domain() {
        let notification = NotificationId::from_bytes([7; 16]);
        let domain = MessageIdDomain::new("Mail.Example.com").unwrap();

        let message_id = new_message_id(notification, &domain);

        assert_eq!(
            message_id,
            "<07070707-0707-0707-0707-070707070707@mail.example.com>"
        );
        assert!(validate_message_id(&message_id).is_ok());
    }

    #[test]
    fn message_id_is_stable_across_calls() {
        let notification = NotificationId::random();
        let domain = MessageIdDomain::new("example.org").unwrap();

        assert_eq!(
            new_message_id(notification, &domain),
            new_message_id(notification, &domain)
        );
    }

    #[test]
    fn message_id_domain_takes_ipv6_literals() {
        for domain in ["[::1]", "::1", "[2001:DB8::7]"] {
            let parsed = MessageIdDomain::new(domain).unwrap();
            let expected = if domain.contains("DB8") {
                "[2001:db8::7]"
            } else {
                "[::1]"
            };
            assert_eq!(parsed.as_str(), expected, "{domain:?}");
            let id = new_message_id(NotificationId::random(), &parsed);
            validate_message_id(&id).unwrap();
        }
        assert!(MessageIdDomain::new("[::1").is_err());
        assert!(MessageIdDomain::new("[example.com]").is_err());
    }

    #[test]
    fn message_id_domain_rejects_invalid_names() {
        for domain in [
            "",
            ".",
            "a..b",
            "exa mple.com",
            "example.com>",
            "example.com\r\nBcc: x@y",
            "exämple.com",
            &"a".repeat(64),
        ] {
            let error = MessageIdDomain::new(domain).unwrap_err();
            assert!(
                matches!(&error, ComposeError::InvalidMessageIdDomain { domain: d } if d == domain),
                "{domain:?} gave {error:?}"
            );
        }
    }

    #[test]
    fn validate_message_id_rejects_malformed_ids() {
        for message_id in [
            "",
            "<>",
            "no-brackets@example.com",
            "<missing-at>",
            "<@example.com>",
            "<left@>",
            "<a@b@c>",
            "<a b@example.com>",
            "<a@example.com>\r\nBcc: x@y",
            "<a@example.com\r\n>",
            "<ä@example.com>",
        ] {
            assert!(
                validate_message_id(message_id).is_err(),
                "{message_id:?} was accepted"
            );
        }
    }
}
