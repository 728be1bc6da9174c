//! Tests of the recipient pages: escaping of hostile strings, page structure and the
//! size, time and wait formats.

use super::*;

const HOSTILE: &str = "<script>alert('x')</script> \"quoted\" & more";
const HOSTILE_ESCAPED: &str =
    "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &quot;quoted&quot; &amp; more";

fn timestamp(text: &str) -> Timestamp {
    text.parse().expect("test timestamp")
}

fn assert_no_raw_hostile(html: &str) {
    assert!(!html.contains("<script"), "raw <script> in {html}");
    assert!(!html.contains("\"quoted\""), "raw quotes in {html}");
    assert!(!html.contains("& more"), "raw & in {html}");
}

#[test]
fn escape_special_characters() {
    assert_eq!(escape(HOSTILE), HOSTILE_ESCAPED);
    assert_eq!(escape("plain text ünïcödé"), "plain text ünïcödé");
    assert_eq!(escape("&amp;"), "&amp;amp;");
}

#[test]
fn password_page_plain() {
    let html = password_page(&PasswordPage::default());
    assert!(html.contains("<form method=\"post\">"));
    assert!(!html.contains("action="), "form posts to its own URL");
    assert!(html.contains("<label for=\"password\">Password</label>"));
    assert!(html.contains("type=\"password\""));
    assert!(html.contains("autocomplete=\"current-password\""));
    assert!(html.contains("<button type=\"submit\">"));
    assert!(!html.contains("role=\"alert\""));
    assert!(!html.contains("<script"));
}

#[test]
fn password_page_error_escaped() {
    let html = password_page(&PasswordPage {
        error: Some(HOSTILE),
        retry_after_seconds: Some(90),
    });
    assert!(html.contains(HOSTILE_ESCAPED));
    assert_no_raw_hostile(&html);
    assert!(html.contains("role=\"alert\""));
    assert!(html.contains("aria-describedby=\"password-error\""));
    assert!(html.contains("<p>Try again in 90 seconds.</p>"));
}

#[test]
fn password_page_retry_only() {
    let html = password_page(&PasswordPage {
        error: None,
        retry_after_seconds: Some(900),
    });
    assert!(html.contains("<p>Too many wrong attempts. Try again in 15 minutes.</p>"));
}

#[test]
fn pages_are_mobile_ready() {
    let pages = [
        password_page(&PasswordPage::default()),
        status_page(&StatusPage::Withdrawn),
    ];
    for html in pages {
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<html lang=\"en\">"));
        assert!(html.contains("name=\"viewport\" content=\"width=device-width, initial-scale=1\""));
        assert!(html.contains("<meta charset=\"utf-8\">"));
        assert!(!html.contains("<style"), "no inline style under the CSP");
        assert!(html.contains("<link rel=\"stylesheet\" href=\"/assets/consign.css\">"));
        assert!(!html.contains("<script"));
    }
}

#[test]
fn delivery_page_escapes_everything() {
    let documents = [DocumentRow {
        name: HOSTILE,
        size: 1_572_864,
        blake3_hex: "<b>hash</b>",
        href: "/d/\"onmouseover=\"x&y",
    }];
    let html = delivery_page(&DeliveryPage {
        sender_name: HOSTILE,
        subject: HOSTILE,
        message: HOSTILE,
        documents: &documents,
        expires_at: None,
    });
    assert_no_raw_hostile(&html);
    assert!(!html.contains("<b>hash"));
    assert!(html.contains("&lt;b&gt;hash&lt;/b&gt;"));
    assert!(html.contains("href=\"/d/&quot;onmouseover=&quot;x&amp;y\""));
    assert!(html.contains(&format!("<title>{HOSTILE_ESCAPED} - consign</title>")));
    assert!(!html.contains("Available until"));
}

#[test]
fn delivery_page_lists_documents() {
    let hash = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
    let documents = [
        DocumentRow {
            name: "contract.pdf",
            size: 1_572_864,
            blake3_hex: hash,
            href: "/r/token/documents/0",
        },
        DocumentRow {
            name: "Договор.pdf",
            size: 12,
            blake3_hex: hash,
            href: "/r/token/documents/1",
        },
    ];
    let html = delivery_page(&DeliveryPage {
        sender_name: "Example Notary",
        subject: "Signed lease",
        message: "Hello,\r\nplease find the lease.\n\nRegards",
        documents: &documents,
        expires_at: Some(timestamp("2026-12-04T10:00:00Z")),
    });

    assert!(html.contains("<h1>Signed lease</h1>"));
    assert!(html.contains("From: Example Notary"));
    assert!(html.contains("Hello,<br>\nplease find the lease.<br>\n<br>\nRegards"));
    assert!(html.contains("1.5 MiB<br><small>1,572,864 bytes</small>"));
    assert!(html.contains("<td>12 bytes</td>"));

    assert_eq!(html.matches(hash).count(), 2);
    assert!(html.contains("href=\"/r/token/documents/0\""));
    assert!(html.contains("href=\"/r/token/documents/1\""));
    assert!(html.contains("Договор.pdf"));
    assert!(html.contains("<th scope=\"col\">BLAKE3 hash</th>"));
    assert!(html.contains("Download<span class=\"visually-hidden\"> contract.pdf</span>"));
    assert!(html.contains(
        "Available until <time datetime=\"2026-12-04T10:00:00Z\">2026-12-04 10:00 UTC</time>."
    ));
}

#[test]
fn delivery_page_without_documents() {
    let html = delivery_page(&DeliveryPage {
        sender_name: "S",
        subject: "Nothing",
        message: "",
        documents: &[],
        expires_at: None,
    });
    assert!(html.contains("contains no documents"));
    assert!(!html.contains("<table>"));
    assert!(!html.contains("<h2>Message</h2>"));
}

#[test]
fn status_pages() {
    let release_at = timestamp("2027-01-15T08:30:00Z");
    let cases = [
        (
            StatusPage::NotYetReleased { release_at },
            "Not available yet",
            StatusCode::FORBIDDEN,
        ),
        (
            StatusPage::Expired {
                expired_at: Some(release_at),
            },
            "Delivery expired",
            StatusCode::GONE,
        ),
        (
            StatusPage::Expired { expired_at: None },
            "Delivery expired",
            StatusCode::GONE,
        ),
        (
            StatusPage::Withdrawn,
            "Delivery withdrawn",
            StatusCode::GONE,
        ),
        (
            StatusPage::UnknownLink,
            "Link not found",
            StatusCode::NOT_FOUND,
        ),
    ];
    for (page, title, status) in cases {
        let html = status_page(&page);
        assert!(html.contains(&format!("<h1>{title}</h1>")), "{page:?}");
        assert_eq!(page.status_code(), status, "{page:?}");
    }
    let html = status_page(&StatusPage::NotYetReleased { release_at });
    assert!(html.contains("2027-01-15 08:30 UTC"));
}

#[test]
fn human_sizes() {
    assert_eq!(human_size(0), "0 bytes");
    assert_eq!(human_size(1), "1 byte");
    assert_eq!(human_size(1023), "1023 bytes");
    assert_eq!(human_size(1024), "1.0 KiB");
    assert_eq!(human_size(1_572_864), "1.5 MiB");
    assert_eq!(human_size(1024 * 1024 - 1), "1.0 MiB");
    assert_eq!(human_size(5 * 1024 * 1024 * 1024), "5.0 GiB");
    assert_eq!(human_size(u64::MAX), "16.0 EiB");
}

#[test]
fn digit_grouping() {
    assert_eq!(group_digits(0), "0");
    assert_eq!(group_digits(999), "999");
    assert_eq!(group_digits(1000), "1,000");
    assert_eq!(group_digits(1_572_864), "1,572,864");
    assert_eq!(group_digits(u64::MAX), "18,446,744,073,709,551,615");
}

#[test]
fn wait_texts() {
    assert_eq!(wait_text(1), "1 second");
    assert_eq!(wait_text(30), "30 seconds");
    assert_eq!(wait_text(120), "2 minutes");
    assert_eq!(wait_text(121), "3 minutes");
}
