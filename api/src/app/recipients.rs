//! Recipients as a sender gives them: addresses, addresses with names, and mailing lists.

use std::collections::HashSet;

use consign_projections::model::Model;
use consign_schemas::AccountId;
use consign_schemas::events::Mailbox;
use serde::Deserialize;

use super::error::ApiError;
use super::names::quoted;
use super::text::check_line;

/// One recipient in a request: `"ada@example.org"` or
/// `{"address": "ada@example.org", "name": "Ada Lovelace"}`.
///
/// An object with any other key is rejected, so a misspelt or foreign key such as
/// `display_name` cannot drop the name silently.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub enum RecipientInput {
    Address(String),
    Named {
        address: String,
        name: Option<String>,
    },
}

impl TryFrom<serde_json::Value> for RecipientInput {
    type Error = String;

    fn try_from(value: serde_json::Value) -> Result<Self, String> {
        const ACCEPTED_FORMS: &str =
            r#"give "name@example.org" or {"address": "name@example.org", "name": "Full Name"}"#;
        let mut object = match value {
            serde_json::Value::String(address) => return Ok(Self::Address(address)),
            serde_json::Value::Object(object) => object,
            other => return Err(format!("a recipient cannot be {other}; {ACCEPTED_FORMS}")),
        };
        if let Some(unknown) = object
            .keys()
            .find(|key| !matches!(key.as_str(), "address" | "name"))
        {
            return Err(format!(
                "unknown key {} in a recipient: the keys are \"address\" and \"name\"; {ACCEPTED_FORMS}",
                quoted(unknown)
            ));
        }
        let address = match object.remove("address") {
            Some(serde_json::Value::String(address)) => address,
            Some(other) => {
                return Err(format!(
                    "a recipient's address cannot be {other}; {ACCEPTED_FORMS}"
                ));
            }
            None => {
                return Err(format!(
                    "a recipient object has no \"address\"; {ACCEPTED_FORMS}"
                ));
            }
        };
        let name = match object.remove("name") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(name)) => Some(name),
            Some(other) => {
                return Err(format!(
                    "a recipient's name cannot be {other}; {ACCEPTED_FORMS}"
                ));
            }
        };
        Ok(Self::Named { address, name })
    }
}

/// Checks one recipient and returns its mailbox, with the address trimmed.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `field` for an address that cannot receive mail or a name
/// with control characters.
pub fn parse_mailbox(field: &str, input: &RecipientInput) -> Result<Mailbox, ApiError> {
    let (address, name) = match input {
        RecipientInput::Address(address) => (address, None),
        RecipientInput::Named { address, name } => (address, name.as_ref()),
    };
    check_line(field, address, 254)?;
    if let Some(name) = name {
        check_line(&format!("{field}.name"), name, 200)?;
    }
    check_address_form(field, address.trim())?;
    let mailbox = Mailbox {
        address: address.trim().to_owned(),
        display_name: name
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty()),
    };
    consign_notifier::check_mailbox(&mailbox).map_err(|error| {
        ApiError::invalid(
            field,
            format!("{field}: {error}; give an address such as name@example.org"),
        )
    })?;
    Ok(mailbox)
}

/// Accepts only the address forms that reach a mailbox on the internet: a local part of
/// letters, digits and `!#$%&'*+-/=?^_`{|}~.` (no quoted forms) and a domain name with at
/// least one dot (no address literal such as `[127.0.0.1]`, no bare IP address).
fn check_address_form(field: &str, address: &str) -> Result<(), ApiError> {
    let invalid = |reason: &str| {
        ApiError::invalid(
            field,
            format!(
                "{field}: invalid address {}: {reason}; give an address such as name@example.org",
                quoted(address)
            ),
        )
    };
    if address.contains(['<', '>']) {
        return Err(invalid(
            "angle brackets are not part of an address; give the address alone, and the \
             display name in its own field",
        ));
    }
    if address.contains([',', ';']) {
        return Err(invalid(
            "it lists several addresses; give each as its own recipient",
        ));
    }
    if address.contains(char::is_whitespace) {
        return Err(invalid("it contains a space"));
    }
    let (local, domain) = address
        .rsplit_once('@')
        .ok_or_else(|| invalid("missing '@'"))?;
    if !local.is_ascii() {
        return Err(invalid(
            "the part before '@' has non-ASCII characters, which are not supported",
        ));
    }
    let local_valid = !local.is_empty()
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    if !local_valid {
        return Err(invalid(
            "the part before '@' has characters that need quoting, which is not supported",
        ));
    }
    let is_ip = domain.parse::<std::net::IpAddr>().is_ok();
    if domain.starts_with('[') || is_ip || !domain.contains('.') || domain.ends_with('.') {
        return Err(invalid(
            "the domain must be a name with a dot, such as example.org",
        ));
    }
    Ok(())
}

/// A recipient after list expansion, with the list it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRecipient {
    pub mailbox: Mailbox,
    pub via_list: Option<String>,
}

/// Checks the addresses, expands the sender's mailing lists and drops repeated
/// addresses (compared without regard to case), keeping the first.
///
/// # Errors
///
/// [`ApiError::Invalid`] for a bad address, an unknown list, or no recipient at all;
/// [`ApiError::LimitExceeded`] for more than `max` recipients.
pub fn resolve(
    model: &Model,
    sender: AccountId,
    addresses: &[RecipientInput],
    lists: &[String],
    max: usize,
) -> Result<Vec<ResolvedRecipient>, ApiError> {
    let mut resolved = Vec::new();
    for (index, input) in addresses.iter().enumerate() {
        resolved.push(ResolvedRecipient {
            mailbox: parse_mailbox(&format!("recipients[{index}]"), input)?,
            via_list: None,
        });
    }
    for (index, name) in lists.iter().enumerate() {
        let members = model.mailing_list(sender, name).ok_or_else(|| {
            ApiError::invalid(
                format!("lists[{index}]"),
                format!(
                    "no mailing list named {}; create it with PUT /api/lists/NAME",
                    quoted(name)
                ),
            )
        })?;
        resolved.extend(members.iter().map(|mailbox| ResolvedRecipient {
            mailbox: mailbox.clone(),
            via_list: Some(name.clone()),
        }));
    }

    let mut seen = HashSet::new();
    resolved.retain(|recipient| seen.insert(recipient.mailbox.address.to_lowercase()));
    if resolved.is_empty() {
        return Err(ApiError::invalid(
            "recipients",
            "no recipient: give at least one address in recipients or a list in lists",
        ));
    }
    if resolved.len() > max {
        return Err(ApiError::LimitExceeded {
            status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            limit: "max_recipients",
            message: format!(
                "{} recipients after expanding lists; the limit is {max} (max_recipients), so \
                 send to the others in another delivery",
                resolved.len()
            ),
        });
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::check_address_form;

    #[test]
    fn address_mistakes_named() {
        let cases = [
            ("Bob <bob@example.org>", "angle brackets"),
            ("bob@example.org, eve@example.org", "several addresses"),
            ("bob@example.org;eve@example.org", "several addresses"),
            ("bob smith@example.org", "contains a space"),
            ("renée@example.org", "non-ASCII"),
            ("bob\"q@example.org", "need quoting"),
            ("bob@localhost", "a name with a dot"),
        ];
        for (address, reason) in cases {
            let error = check_address_form("to", address).unwrap_err().to_string();
            assert!(error.contains(reason), "{address:?}: {error}");
        }
        assert!(check_address_form("to", "bob.smith+legal@example.org").is_ok());
    }
}
