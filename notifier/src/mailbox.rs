//! Conversion of the schema's mailboxes (an address and a display name typed by a
//! person) into lettre's, and their label in body text.
//!
//! Display names are reduced to one line here, so no caller can pass a line break into
//! an address header.

use lettre::Address;
use lettre::message::Mailbox as LettreMailbox;

use consign_schemas::events::Mailbox;

use crate::compose::ComposeError;
use crate::text::single_line;

/// Converts a schema mailbox to lettre's, cleaning the display name to one line and
/// converting an internationalized domain to its ASCII (punycode) form.
///
/// A local part outside ASCII is rejected: it needs the SMTPUTF8 extension and
/// UTF-8 headers (RFC 6531, RFC 6532), which this notifier does not produce.
pub(crate) fn to_lettre_mailbox(
    role: &'static str,
    mailbox: &Mailbox,
) -> Result<LettreMailbox, ComposeError> {
    let invalid = |reason: &str| ComposeError::InvalidAddress {
        role,
        address: mailbox.address.clone(),
        reason: reason.to_owned(),
    };

    let (local_part, domain) = mailbox
        .address
        .rsplit_once('@')
        .ok_or_else(|| invalid("missing '@'"))?;
    if !local_part.is_ascii() {
        return Err(invalid(
            "the part before '@' is not ASCII, which needs SMTPUTF8 and is not supported",
        ));
    }
    let domain = if domain.is_ascii() {
        domain.to_owned()
    } else {
        match url::Host::parse(domain) {
            Ok(url::Host::Domain(ascii)) => ascii,
            _ => {
                return Err(invalid(
                    "the domain is not a valid internationalized domain name",
                ));
            }
        }
    };
    let address = Address::new(local_part, domain).map_err(|error| invalid(&error.to_string()))?;

    let display_name = mailbox
        .display_name
        .as_deref()
        .map(single_line)
        .filter(|name| !name.is_empty());
    Ok(LettreMailbox::new(display_name, address))
}

/// Names a mailbox in body text: `Name <address>`, or the address alone.
pub(crate) fn mailbox_label(mailbox: &LettreMailbox) -> String {
    match &mailbox.name {
        Some(name) => format!("{name} <{}>", mailbox.email),
        None => mailbox.email.to_string(),
    }
}

/// Checks that a mailbox can be sent to, with the reason when it cannot.
///
/// # Errors
///
/// [`ComposeError::InvalidAddress`] naming the address and what is wrong with it.
pub fn check_mailbox(mailbox: &Mailbox) -> Result<(), ComposeError> {
    to_lettre_mailbox("recipient", mailbox).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_converts_internationalized_domain() {
        let mailbox = to_lettre_mailbox(
            "recipient",
            &Mailbox {
                address: "anna@bücher.example".to_owned(),
                display_name: Some("Anna\r\nBcc: x@y".to_owned()),
            },
        )
        .unwrap();
        assert_eq!(mailbox.email.to_string(), "anna@xn--bcher-kva.example");
        assert_eq!(mailbox.name.as_deref(), Some("Anna  Bcc: x@y"));
    }

    #[test]
    fn mailbox_rejects_bad_addresses() {
        for address in [
            "no-at-sign",
            "ünicode@example.com",
            "a@b@",
            "line\r\nbreak@example.com",
            "a@exa mple.com",
        ] {
            let error = to_lettre_mailbox(
                "recipient",
                &Mailbox {
                    address: address.to_owned(),
                    display_name: None,
                },
            )
            .unwrap_err();
            assert!(
                matches!(&error, ComposeError::InvalidAddress { role: "recipient", address: a, .. } if a == address),
                "{address:?} gave {error:?}"
            );
        }
    }
}
