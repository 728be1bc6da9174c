//! Server-rendered HTML pages for recipients: the password form, the delivery page and
//! the status pages, and for senders the postmark receipt.
//!
//! The pages contain no JavaScript, take their style from the stylesheet that the
//! sender pages share ([`STYLESHEET_PATH`]), and fit a phone screen. Every string that
//! comes from a sender, a recipient or a request passes through [`escape`] before it
//! reaches the markup.

mod postmark;

use std::fmt::Write;

use axum::http::StatusCode;
use jiff::Timestamp;

pub(crate) use postmark::{PostmarkDocument, PostmarkPage, postmark_page};

/// `Content-Security-Policy` that these pages work under. It allows no script, styles
/// and images from this origin only, and forms that post to this origin only.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
     img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Path of the stylesheet of every page, served by [`crate::pages`].
pub(crate) const STYLESHEET_PATH: &str = "/assets/consign.css";

/// Escapes `text` for use in HTML element content and in quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// Variable parts of the password form.
#[derive(Clone, Debug, Default)]
pub(crate) struct PasswordPage<'a> {
    /// Message about the previous attempt, such as "Wrong password.".
    pub(crate) error: Option<&'a str>,
    /// Seconds the recipient must wait before the next attempt.
    pub(crate) retry_after_seconds: Option<u64>,
}

/// Contents of the delivery page shown to a recipient after opening the link.
#[derive(Clone, Debug)]
pub(crate) struct DeliveryPage<'a> {
    pub(crate) sender_name: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) message: &'a str,
    pub(crate) documents: &'a [DocumentRow<'a>],
    /// End of the download period, if the delivery expires.
    pub(crate) expires_at: Option<Timestamp>,
}

/// One document in the delivery page's table.
#[derive(Clone, Debug)]
pub(crate) struct DocumentRow<'a> {
    pub(crate) name: &'a str,
    pub(crate) size: u64,
    /// BLAKE3 hash of the plaintext as 64 lowercase hexadecimal digits.
    pub(crate) blake3_hex: &'a str,
    /// URL of the download, relative or absolute, built by the caller.
    pub(crate) href: &'a str,
}

/// Status page that explains why a link shows no documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatusPage {
    /// The sender set a release time that is still in the future.
    NotYetReleased { release_at: Timestamp },
    /// The download period ended.
    Expired { expired_at: Option<Timestamp> },
    /// The sender withdrew the delivery.
    Withdrawn,
    /// No delivery has this link, or the token in it is mistyped.
    UnknownLink,
    /// The link is right, but its delivery has no document with the id in the URL.
    UnknownDocument,
    /// The password form was posted from another site.
    CrossSite,
}

impl StatusPage {
    /// HTTP status that goes with the page: 403 before release and for a form posted
    /// from another site, 410 for expired and withdrawn deliveries, 404 for an unknown
    /// link or document.
    pub(crate) fn status_code(&self) -> StatusCode {
        match self {
            StatusPage::NotYetReleased { .. } => StatusCode::FORBIDDEN,
            StatusPage::Expired { .. } | StatusPage::Withdrawn => StatusCode::GONE,
            StatusPage::UnknownLink | StatusPage::UnknownDocument => StatusCode::NOT_FOUND,
            StatusPage::CrossSite => StatusCode::FORBIDDEN,
        }
    }
}

/// Renders the password form, which posts to the page's own URL.
pub(crate) fn password_page(page: &PasswordPage<'_>) -> String {
    let mut body = String::from(
        "<h1>Password required</h1>\n\
         <p>The sender protected this delivery with a password. \
         Enter the password the sender gave you.</p>\n",
    );
    let has_error = page.error.is_some() || page.retry_after_seconds.is_some();
    if has_error {
        body.push_str("<div id=\"password-error\" class=\"error\" role=\"alert\">\n");
        if let Some(error) = page.error {
            let _ = writeln!(body, "<p>{}</p>", escape(error));
        }
        if let Some(seconds) = page.retry_after_seconds {
            let reason = if page.error.is_none() {
                "Too many wrong attempts. "
            } else {
                ""
            };
            let _ = writeln!(
                body,
                "<p>{reason}Try again in {}.</p>",
                escape(&wait_text(seconds))
            );
        }
        body.push_str("</div>\n");
    }
    let described_by = if has_error {
        " aria-describedby=\"password-error\" aria-invalid=\"true\""
    } else {
        ""
    };
    let _ = write!(
        body,
        "<form method=\"post\">\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required autofocus{described_by}>\n\
         <button type=\"submit\">Open delivery</button>\n\
         </form>\n"
    );
    document("Password required", &body)
}

/// Renders the delivery with its documents and their download links.
pub(crate) fn delivery_page(page: &DeliveryPage<'_>) -> String {
    let mut body = String::new();
    let _ = writeln!(body, "<h1>{}</h1>", escape(page.subject));
    let _ = writeln!(body, "<p>From: {}</p>", escape(page.sender_name));
    if let Some(expires_at) = page.expires_at {
        let _ = writeln!(body, "<p>Available until {}.</p>", time_element(expires_at));
    }
    if !page.message.trim().is_empty() {
        let _ = writeln!(
            body,
            "<h2>Message</h2>\n<p>{}</p>",
            escape_with_line_breaks(page.message)
        );
    }

    body.push_str("<h2>Documents</h2>\n");
    if page.documents.is_empty() {
        body.push_str("<p>This delivery contains no documents.</p>\n");
    } else {
        body.push_str(
            "<div class=\"scroll\"><table>\n\
             <caption class=\"visually-hidden\">Documents in this delivery</caption>\n\
             <thead><tr><th scope=\"col\">Document</th><th scope=\"col\">Size</th>\
             <th scope=\"col\">BLAKE3 hash</th></tr></thead>\n\
             <tbody>\n",
        );
        for row in page.documents {
            push_document_row(&mut body, row);
        }
        body.push_str("</tbody>\n</table></div>\n");
    }
    document(page.subject, &body)
}

fn push_document_row(body: &mut String, row: &DocumentRow<'_>) {
    let name = escape(row.name);
    let human = human_size(row.size);
    // Sizes below 1 KiB are already exact in the human form.
    let exact = if row.size < 1024 {
        String::new()
    } else {
        format!("<br><small>{} bytes</small>", group_digits(row.size))
    };
    let _ = writeln!(
        body,
        "<tr><td>{name}<br><a href=\"{}\" download>Download\
         <span class=\"visually-hidden\"> {name}</span></a></td>\
         <td>{human}{exact}</td><td><code>{}</code></td></tr>",
        escape(row.href),
        escape(row.blake3_hex),
    );
}

/// Renders a status page; send it with [`StatusPage::status_code`].
pub(crate) fn status_page(page: &StatusPage) -> String {
    let (title, text) = match page {
        StatusPage::NotYetReleased { release_at } => (
            "Not available yet",
            format!(
                "The sender scheduled this delivery for {}. Open the link again after that time.",
                time_element(*release_at)
            ),
        ),
        StatusPage::Expired {
            expired_at: Some(expired_at),
        } => (
            "Delivery expired",
            format!(
                "This delivery could be downloaded until {}. Ask the sender to send it again.",
                time_element(*expired_at)
            ),
        ),
        StatusPage::Expired { expired_at: None } => (
            "Delivery expired",
            "The download period of this delivery has ended. Ask the sender to send it again."
                .to_owned(),
        ),
        StatusPage::Withdrawn => (
            "Delivery withdrawn",
            "The sender withdrew this delivery, so its documents can no longer be downloaded."
                .to_owned(),
        ),
        StatusPage::UnknownLink => (
            "Link not found",
            "No delivery has this link. Check that the whole link was copied from the e-mail."
                .to_owned(),
        ),
        StatusPage::UnknownDocument => (
            "Document not found",
            "This delivery has no document at this address. Open the link from your e-mail \
             again to see the documents of the delivery."
                .to_owned(),
        ),
        StatusPage::CrossSite => (
            "Form not accepted",
            "The password was sent from another website, so it was not checked. Open the \
             link from your e-mail and enter the password on this site."
                .to_owned(),
        ),
    };
    document(title, &format!("<h1>{title}</h1>\n<p>{text}</p>\n"))
}

/// Wraps `body`, which must already be escaped, in a complete HTML document.
fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{} - consign</title>\n\
         <link rel=\"stylesheet\" href=\"{STYLESHEET_PATH}\">\n</head>\n<body>\n\
         <header class=\"site\"><div class=\"bar\"><span class=\"brand\">consign</span>\
         </div></header>\n<main class=\"narrow\">\n{body}</main>\n</body>\n</html>\n",
        escape(title)
    )
}

/// Escapes `text` and turns each line break (LF, CRLF or CR) into `<br>`.
fn escape_with_line_breaks(text: &str) -> String {
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    normalized
        .split('\n')
        .map(escape)
        .collect::<Vec<_>>()
        .join("<br>\n")
}

/// Formats a UTC time as a `<time>` element, for example
/// `<time datetime="2026-12-04T10:00:00Z">2026-12-04 10:00 UTC</time>`.
fn time_element(time: Timestamp) -> String {
    let machine = time.strftime("%Y-%m-%dT%H:%M:%SZ");
    let human = time.strftime("%Y-%m-%d %H:%M UTC");
    format!("<time datetime=\"{machine}\">{human}</time>")
}

/// Formats a wait such as "1 second", "45 seconds" or "3 minutes".
fn wait_text(seconds: u64) -> String {
    match seconds {
        1 => "1 second".to_owned(),
        0..=119 => format!("{seconds} seconds"),
        _ => format!("{} minutes", seconds.div_ceil(60)),
    }
}

/// Formats a size in binary units with one decimal, such as "1.5 MiB".
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return if bytes == 1 {
            "1 byte".to_owned()
        } else {
            format!("{bytes} bytes")
        };
    }
    // f64 is exact to 2^53 bytes, far beyond any document, and one decimal is shown.
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // A value that would print as "1024.0" moves up to the next unit.
    while value >= 1023.95 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Formats an integer with commas between groups of three digits.
fn group_digits(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests;
