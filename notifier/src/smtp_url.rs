//! SMTP relay settings and their URL form.
//!
//! Accepted forms, with `USER:PASSWORD@` optional before the host in each:
//!
//! | URL | connection | default port |
//! | --- | --- | --- |
//! | `smtp://HOST[:PORT]` | plain TCP, no TLS | 25 |
//! | `smtp://HOST[:PORT]?tls=starttls` | STARTTLS required before MAIL FROM | 587 |
//! | `smtps://HOST[:PORT]` | TLS from the first byte (implicit TLS) | 465 |
//!
//! User name and password are percent-decoded, so `%40` stands for `@` and `%3A` for
//! `:`. `timeout=SECONDS` in the query sets the limit on one whole send (1 to 3600,
//! default 60). No secret appears in a parse error, in `Debug` or in `Display`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use url::Url;

/// The accepted forms, repeated in every parse error.
const ACCEPTED_FORMS: &str = "expected smtp://[USER:PASSWORD@]HOST[:PORT] (plain), \
     smtp://[USER:PASSWORD@]HOST[:PORT]?tls=starttls (STARTTLS required) or \
     smtps://[USER:PASSWORD@]HOST[:PORT] (implicit TLS), optionally with timeout=SECONDS \
     in the query";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_TIMEOUT_SECS: u64 = 3600;

/// Errors of parsing an SMTP URL. Each names the bad value and the accepted forms, and
/// shows the URL with its password replaced by `***`.
#[derive(Debug, thiserror::Error)]
pub enum ParseSmtpUrlError {
    #[error("invalid SMTP URL {url:?} ({source}); {ACCEPTED_FORMS}")]
    InvalidUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },

    #[error("unsupported scheme {scheme:?} in SMTP URL {url:?}; {ACCEPTED_FORMS}")]
    UnsupportedScheme { scheme: String, url: String },

    #[error("missing host in SMTP URL {url:?}; {ACCEPTED_FORMS}")]
    MissingHost { url: String },

    #[error("invalid host {host:?} in SMTP URL {url:?}; expected a host name or IP address")]
    InvalidHost { host: String, url: String },

    #[error("unexpected path {path:?} in SMTP URL {url:?}; {ACCEPTED_FORMS}")]
    UnexpectedPath { path: String, url: String },

    #[error("unknown parameter {name:?} in SMTP URL {url:?}; {ACCEPTED_FORMS}")]
    UnknownParameter { name: String, url: String },

    #[error("parameter {name:?} given twice in SMTP URL {url:?}; {ACCEPTED_FORMS}")]
    DuplicateParameter { name: String, url: String },

    #[error(
        "invalid tls={value:?} in SMTP URL {url:?}: only tls=starttls is accepted, and only \
         with smtp://; {ACCEPTED_FORMS}"
    )]
    InvalidTls { value: String, url: String },

    #[error(
        "invalid timeout={value:?} in SMTP URL {url:?}: expected whole seconds from 1 to \
         {MAX_TIMEOUT_SECS}"
    )]
    InvalidTimeout { value: String, url: String },

    #[error(
        "invalid credentials in SMTP URL {url:?}: the user name or password is not UTF-8 \
         after percent-decoding, or a password has no user name; {ACCEPTED_FORMS}"
    )]
    InvalidCredentials { url: String },
}

/// Protection of the connection to the relay.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SmtpSecurity {
    /// Plain TCP. Suits a relay on the same host or network only.
    Plain,
    /// Plain TCP upgraded by STARTTLS. A server that does not offer STARTTLS fails the
    /// send before MAIL FROM, so nothing travels unencrypted.
    StartTls,
    /// TLS from the first byte (RFC 8314).
    ImplicitTls,
}

/// User name and password for SMTP AUTH.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpCredentials {
    user: String,
    /// Never printed: `Debug` and `Display` of every type here leave it out.
    password: String,
}

impl SmtpCredentials {
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub(crate) fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for SmtpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpCredentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Address, protection, credentials and time limit of the SMTP relay.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub credentials: Option<SmtpCredentials>,
    /// Limit on one whole send, from connecting to the reply after DATA.
    pub timeout: Duration,
}

impl FromStr for SmtpConfig {
    type Err = ParseSmtpUrlError;

    /// Parses one of the forms in the module documentation.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let redacted_url = redact_password(text);

        let url = Url::parse(text).map_err(|source| ParseSmtpUrlError::InvalidUrl {
            url: redacted_url.clone(),
            source,
        })?;
        let implicit_tls = match url.scheme() {
            "smtp" => false,
            "smtps" => true,
            scheme => {
                return Err(ParseSmtpUrlError::UnsupportedScheme {
                    scheme: scheme.to_owned(),
                    url: redacted_url,
                });
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(name)) if !name.is_empty() => {
                ascii_host(name).ok_or_else(|| ParseSmtpUrlError::InvalidHost {
                    host: name.to_owned(),
                    url: redacted_url.clone(),
                })?
            }
            Some(url::Host::Ipv4(address)) => address.to_string(),
            // lettre connects to a host name or address string; IPv6 goes without brackets.
            Some(url::Host::Ipv6(address)) => address.to_string(),
            _ => return Err(ParseSmtpUrlError::MissingHost { url: redacted_url }),
        };
        if !matches!(url.path(), "" | "/") {
            return Err(ParseSmtpUrlError::UnexpectedPath {
                path: url.path().to_owned(),
                url: redacted_url,
            });
        }
        if url.fragment().is_some() {
            return Err(ParseSmtpUrlError::UnexpectedPath {
                path: format!("#{}", url.fragment().unwrap_or_default()),
                url: redacted_url,
            });
        }

        let (starttls, timeout) = parse_query(&url, &redacted_url)?;
        let security = match (implicit_tls, starttls) {
            (false, false) => SmtpSecurity::Plain,
            (false, true) => SmtpSecurity::StartTls,
            (true, false) => SmtpSecurity::ImplicitTls,
            (true, true) => {
                return Err(ParseSmtpUrlError::InvalidTls {
                    value: "starttls".to_owned(),
                    url: redacted_url,
                });
            }
        };
        let port = url.port().unwrap_or(match security {
            SmtpSecurity::Plain => 25,
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::ImplicitTls => 465,
        });
        let credentials = parse_credentials(&url, &redacted_url)?;

        Ok(Self {
            host,
            port,
            security,
            credentials,
            timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
        })
    }
}

impl fmt::Display for SmtpConfig {
    /// Writes the URL form without the password, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.security {
            SmtpSecurity::ImplicitTls => "smtps",
            SmtpSecurity::Plain | SmtpSecurity::StartTls => "smtp",
        };
        write!(f, "{scheme}://")?;
        if let Some(credentials) = &self.credentials {
            write!(f, "{}:***@", credentials.user)?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{}:{}", self.host, self.port)?;
        }
        if self.security == SmtpSecurity::StartTls {
            f.write_str("?tls=starttls")?;
        }
        Ok(())
    }
}

/// Returns the lowercase ASCII form of a host name, converting an internationalized
/// name to punycode, or `None` if it is not a valid host name.
///
/// `smtp` is not one of the URL standard's special schemes, so the url crate keeps its
/// host as written, percent-encoded and without IDNA processing.
fn ascii_host(raw_host: &str) -> Option<String> {
    let decoded = percent_decode_str(raw_host).decode_utf8().ok()?;
    match url::Host::parse(&decoded).ok()? {
        url::Host::Domain(name) => Some(name.to_ascii_lowercase()),
        url::Host::Ipv4(address) => Some(address.to_string()),
        url::Host::Ipv6(address) => Some(address.to_string()),
    }
}

/// Reads `tls` and `timeout` from the query, rejecting any other or repeated name.
fn parse_query(
    url: &Url,
    redacted_url: &str,
) -> Result<(bool, Option<Duration>), ParseSmtpUrlError> {
    let mut starttls = None;
    let mut timeout = None;

    for (name, value) in url.query_pairs() {
        match name.as_ref() {
            "tls" => {
                if starttls.is_some() {
                    return Err(ParseSmtpUrlError::DuplicateParameter {
                        name: name.into_owned(),
                        url: redacted_url.to_owned(),
                    });
                }
                if !value.eq_ignore_ascii_case("starttls") {
                    return Err(ParseSmtpUrlError::InvalidTls {
                        value: value.into_owned(),
                        url: redacted_url.to_owned(),
                    });
                }
                starttls = Some(true);
            }
            "timeout" => {
                if timeout.is_some() {
                    return Err(ParseSmtpUrlError::DuplicateParameter {
                        name: name.into_owned(),
                        url: redacted_url.to_owned(),
                    });
                }
                let seconds = value
                    .parse::<u64>()
                    .ok()
                    .filter(|seconds| (1..=MAX_TIMEOUT_SECS).contains(seconds))
                    .ok_or_else(|| ParseSmtpUrlError::InvalidTimeout {
                        value: value.clone().into_owned(),
                        url: redacted_url.to_owned(),
                    })?;
                timeout = Some(Duration::from_secs(seconds));
            }
            _ => {
                return Err(ParseSmtpUrlError::UnknownParameter {
                    name: name.into_owned(),
                    url: redacted_url.to_owned(),
                });
            }
        }
    }
    Ok((starttls.unwrap_or(false), timeout))
}

/// Percent-decodes the user name and password, if the URL has them.
fn parse_credentials(
    url: &Url,
    redacted_url: &str,
) -> Result<Option<SmtpCredentials>, ParseSmtpUrlError> {
    let invalid = || ParseSmtpUrlError::InvalidCredentials {
        url: redacted_url.to_owned(),
    };

    if url.username().is_empty() {
        return match url.password() {
            Some(_) => Err(invalid()),
            None => Ok(None),
        };
    }
    let user = percent_decode_str(url.username())
        .decode_utf8()
        .map_err(|_| invalid())?;
    let password = percent_decode_str(url.password().unwrap_or_default())
        .decode_utf8()
        .map_err(|_| invalid())?;
    Ok(Some(SmtpCredentials::new(user, password)))
}

/// Replaces the password of a URL-like text with `***`, even when the text does not
/// parse as a URL, so that a typo elsewhere in the URL does not put the password into
/// an error message or a log.
///
/// The replaced span runs from the first `:` after `://` (or after the start, without
/// `://`) to the last `@`. It can cover more than the password, such as an `@` in a
/// path, but it always covers the whole password, which ends at the `@` before the
/// host.
fn redact_password(text: &str) -> String {
    let authority_start = text.find("://").map_or(0, |idx| idx + 3);
    let rest = &text[authority_start..];
    let Some(at_idx) = rest.rfind('@') else {
        return text.to_owned();
    };
    let Some(colon_idx) = rest[..at_idx].find(':') else {
        return text.to_owned();
    };
    format!(
        "{}{}:***{}",
        &text[..authority_start],
        &rest[..colon_idx],
        &rest[at_idx..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SmtpConfig {
        text.parse()
            .unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    #[test]
    fn plain_with_port() {
        let config = parse("smtp://mail.example.com:2525");
        assert_eq!(config.host, "mail.example.com");
        assert_eq!(config.port, 2525);
        assert_eq!(config.security, SmtpSecurity::Plain);
        assert_eq!(config.credentials, None);
        assert_eq!(config.timeout, Duration::from_secs(60));
    }

    #[test]
    fn default_ports_follow_security() {
        assert_eq!(parse("smtp://mail.example.com").port, 25);
        assert_eq!(parse("smtp://mail.example.com?tls=starttls").port, 587);
        assert_eq!(parse("smtps://mail.example.com").port, 465);
    }

    #[test]
    fn starttls_and_implicit_tls() {
        assert_eq!(
            parse("smtp://mail.example.com:587?tls=starttls").security,
            SmtpSecurity::StartTls
        );
        assert_eq!(
            parse("smtps://mail.example.com:465/").security,
            SmtpSecurity::ImplicitTls
        );
    }

    #[test]
    fn credentials_are_percent_decoded() {
        let config = parse("smtps://user%40example.com:p%3Ass%2Fw%40rd%20x@mail.example.com");
        let credentials = config.credentials.unwrap();
        assert_eq!(credentials.user(), "user@example.com");
        assert_eq!(credentials.password(), "p:ss/w@rd x");
    }

    #[test]
    fn user_without_password() {
        let credentials = parse("smtp://relay@127.0.0.1:25").credentials.unwrap();
        assert_eq!(credentials.user(), "relay");
        assert_eq!(credentials.password(), "");
    }

    #[test]
    fn hosts_in_every_form() {
        assert_eq!(parse("smtp://127.0.0.1:25").host, "127.0.0.1");
        assert_eq!(parse("smtp://[::1]:25").host, "::1");
        assert_eq!(parse("smtp://Mail.Example.COM").host, "mail.example.com");
        assert_eq!(parse("smtp://bücher.example").host, "xn--bcher-kva.example");
    }

    #[test]
    fn timeout_parameter() {
        assert_eq!(
            parse("smtp://localhost:25?timeout=5").timeout,
            Duration::from_secs(5)
        );
        assert_eq!(
            parse("smtp://localhost:25?tls=starttls&timeout=3600").timeout,
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn display_hides_password() {
        let config = parse("smtp://me:hunter2@mail.example.com:587?tls=starttls");
        assert_eq!(
            config.to_string(),
            "smtp://me:***@mail.example.com:587?tls=starttls"
        );
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(parse("smtps://[::1]").to_string(), "smtps://[::1]:465");
    }

    /// Every rejected URL: the error must name the bad value, list the accepted forms
    /// where the mistake may be the form, and never contain the password.
    #[test]
    fn errors_name_the_bad_value() {
        let cases = [
            ("not a url", "not a url"),
            ("http://mail.example.com", "\"http\""),
            ("smtp://", "missing host"),
            ("smtp://mail.example.com/ehlo.name", "\"/ehlo.name\""),
            ("smtp://mail.example.com?tls=wrapper", "\"wrapper\""),
            ("smtps://mail.example.com?tls=starttls", "tls=\"starttls\""),
            ("smtp://mail.example.com?security=tls", "\"security\""),
            (
                "smtp://mail.example.com?tls=starttls&tls=starttls",
                "given twice",
            ),
            ("smtp://mail.example.com?timeout=0", "timeout=\"0\""),
            ("smtp://mail.example.com?timeout=1m", "timeout=\"1m\""),
            ("smtp://mail.example.com:99999", "mail.example.com:99999"),
            ("smtp://:hunter2@mail.example.com", "invalid credentials"),
            (
                "smtp://me:%FFhunter2@mail.example.com",
                "invalid credentials",
            ),
        ];
        for (text, expected) in cases {
            let message = text.parse::<SmtpConfig>().unwrap_err().to_string();
            assert!(message.contains(expected), "{text}: {message}");
            assert!(!message.contains("hunter2"), "{text}: {message}");
        }
    }

    #[test]
    fn form_errors_list_accepted_forms() {
        for text in [
            "not a url",
            "http://x",
            "smtp://x?tls=none",
            "smtp://x?foo=1",
        ] {
            let message = text.parse::<SmtpConfig>().unwrap_err().to_string();
            assert!(
                message.contains("smtps://[USER:PASSWORD@]HOST[:PORT]"),
                "{message}"
            );
        }
    }

    #[test]
    fn redact_password_without_valid_url() {
        assert_eq!(
            redact_password("smtp://me:hunter2@bad host:25"),
            "smtp://me:***@bad host:25"
        );
        assert_eq!(redact_password("smtp://me:p@ss@host"), "smtp://me:***@host");
        assert_eq!(
            redact_password("smtp://me:p/s?s#@host"),
            "smtp://me:***@host"
        );
        assert_eq!(redact_password("smtp://me:pw@host/x@y"), "smtp://me:***@y");
        assert_eq!(redact_password("smtp:/me:pw@host"), "smtp:***@host");
        assert_eq!(redact_password("me:pw@host"), "me:***@host");
        assert_eq!(redact_password("smtp://host:25"), "smtp://host:25");
        assert_eq!(redact_password("no scheme"), "no scheme");
    }
}
