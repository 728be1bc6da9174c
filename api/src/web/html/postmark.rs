//! The postmark receipt as a page a person reads: the signed fields, the signature and
//! how to check it offline.

use std::fmt::Write;

use jiff::Timestamp;

use super::{document, escape};

/// Contents of the postmark receipt page. Hashes, keys and signatures are lowercase
/// hexadecimal.
#[derive(Clone, Debug)]
pub(crate) struct PostmarkPage<'a> {
    pub(crate) delivery: &'a str,
    /// The sender's subject of the delivery.
    pub(crate) subject: &'a str,
    pub(crate) chain: u32,
    pub(crate) position: u64,
    pub(crate) submission_hash: &'a str,
    /// Sequencer time of the submission, the instant the postmark signs.
    pub(crate) submission_time: Timestamp,
    /// The signed documents in signed order.
    pub(crate) documents: &'a [PostmarkDocument<'a>],
    pub(crate) key_id: &'a str,
    /// `None` when this server no longer has the key, which a damaged key folder causes.
    pub(crate) public_key: Option<&'a str>,
    pub(crate) signature: &'a str,
    pub(crate) signed_message: &'a str,
    /// URL of the same receipt as JSON.
    pub(crate) json_url: &'a str,
    /// URL of the published postmark public keys.
    pub(crate) keys_url: &'a str,
}

/// One signed document hash with the file name the sender gave it.
#[derive(Clone, Debug)]
pub(crate) struct PostmarkDocument<'a> {
    /// `None` when no document of the delivery has the signed hash.
    pub(crate) name: Option<&'a str>,
    pub(crate) blake3: &'a str,
}

/// Renders the postmark receipt page.
pub(crate) fn postmark_page(page: &PostmarkPage<'_>) -> String {
    let mut body = String::from("<h1>Electronic postmark</h1>\n");
    let _ = writeln!(
        body,
        "<p>consign signed the submission of this delivery with Ed25519. The signature \
         covers the submission's place in the ledger, its time and the BLAKE3 hash of \
         each document, so anyone can check this receipt offline.</p>"
    );

    body.push_str("<h2>Submission</h2>\n<div class=\"scroll\"><table>\n<tbody>\n");
    push_row(&mut body, "Delivery", &code(page.delivery));
    push_row(&mut body, "Subject", &escape(page.subject));
    push_row(&mut body, "Ledger chain", &page.chain.to_string());
    push_row(
        &mut body,
        "Position in the chain",
        &page.position.to_string(),
    );
    push_row(
        &mut body,
        "Submission event hash (BLAKE3)",
        &code(page.submission_hash),
    );
    push_row(
        &mut body,
        "Submission time (UTC)",
        &utc_time(page.submission_time),
    );
    body.push_str("</tbody>\n</table></div>\n");

    body.push_str("<h2>Documents</h2>\n");
    if page.documents.is_empty() {
        body.push_str("<p>The postmark signs no documents.</p>\n");
    } else {
        body.push_str(
            "<div class=\"scroll\"><table>\n\
             <thead><tr><th scope=\"col\">Document</th>\
             <th scope=\"col\">BLAKE3 hash</th></tr></thead>\n<tbody>\n",
        );
        for row in page.documents {
            let name = row
                .name
                .map_or_else(|| "<em>unknown name</em>".to_owned(), escape);
            let _ = writeln!(
                body,
                "<tr><td>{name}</td><td>{}</td></tr>",
                code(row.blake3)
            );
        }
        body.push_str("</tbody>\n</table></div>\n");
    }

    body.push_str("<h2>Signature</h2>\n<div class=\"scroll\"><table>\n<tbody>\n");
    push_row(&mut body, "Algorithm", "Ed25519");
    push_row(&mut body, "Key id", &code(page.key_id));
    let public_key = page.public_key.map_or_else(
        || "not on this server; see the published keys".to_owned(),
        code,
    );
    push_row(&mut body, "Public key", &public_key);
    push_row(&mut body, "Signature", &code(page.signature));
    push_row(&mut body, "Signed message", &code(page.signed_message));
    body.push_str("</tbody>\n</table></div>\n");

    push_instructions(&mut body, page);
    document("Electronic postmark", &body)
}

/// Explains the offline check step by step.
fn push_instructions(body: &mut String, page: &PostmarkPage<'_>) {
    let json_url = escape(page.json_url);
    let keys_url = escape(page.keys_url);
    let key_id = escape(page.key_id);
    let _ = write!(
        body,
        "<h2>How to check this postmark offline</h2>\n<ol>\n\
         <li>Save <a href=\"{json_url}\">this receipt as JSON</a>. Its \
         <code>signed_message</code> holds the signed bytes in hexadecimal.</li>\n\
         <li>Take the public key with key id <code>{key_id}</code> from the keys this \
         server publishes at <a href=\"{keys_url}\">{keys_url}</a>. Keys stay published \
         after a rotation, so older postmarks keep verifying.</li>\n\
         <li>Verify the Ed25519 signature over the signed message with that public key, \
         using any Ed25519 library or tool.</li>\n\
         <li>Check that the signed message holds the values above, in this order: the \
         ASCII text <code>consign 2026-12-04 postmark v1</code>, the chain (4 bytes), \
         the position (8 bytes), the submission event hash (32 bytes), the time in \
         microseconds since 1970-01-01 UTC (8 bytes, signed), the number of documents \
         (4 bytes) and each document's BLAKE3 hash (32 bytes). Numbers are \
         big-endian.</li>\n\
         <li>Compute the BLAKE3 hash of each document you hold, for example with \
         <code>b3sum</code>, and compare it with the table above.</li>\n</ol>\n"
    );
}

fn push_row(body: &mut String, header: &str, value: &str) {
    let _ = writeln!(
        body,
        "<tr><th scope=\"row\">{header}</th><td>{value}</td></tr>"
    );
}

/// Escapes `text` into a `<code>` element.
fn code(text: &str) -> String {
    format!("<code>{}</code>", escape(text))
}

/// Formats an instant with its exact microseconds and the value the signature covers,
/// for example `<time datetime="2026-12-04T10:00:00.5Z">2026-12-04 10:00:00.500000
/// UTC</time> (1796378400500000 microseconds since 1970-01-01 UTC)`.
fn utc_time(time: Timestamp) -> String {
    let human = time.strftime("%Y-%m-%d %H:%M:%S%.6f UTC");
    format!(
        "<time datetime=\"{time}\">{human}</time> ({} microseconds since 1970-01-01 UTC)",
        time.as_microsecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "<script>alert('x')</script> \"quoted\" & more";
    const HOSTILE_ESCAPED: &str =
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &quot;quoted&quot; &amp; more";

    fn page_with<'a>(documents: &'a [PostmarkDocument<'a>], subject: &'a str) -> PostmarkPage<'a> {
        PostmarkPage {
            delivery: "0192e0a4-7b1c-7000-8000-000000000001",
            subject,
            chain: 3,
            position: 42,
            submission_hash: "ab12",
            submission_time: "2026-12-04T10:00:00.5Z".parse().expect("test time"),
            documents,
            key_id: "ed25519-0123456789abcdef",
            public_key: Some("cd34"),
            signature: "ef56",
            signed_message: "0789",
            json_url: "/api/deliveries/0192e0a4-7b1c-7000-8000-000000000001/postmark?format=json",
            keys_url: "/.well-known/consign-postmark-keys.json",
        }
    }

    #[test]
    fn page_shows_signed_fields() {
        let documents = [
            PostmarkDocument {
                name: Some("contract.pdf"),
                blake3: "aa",
            },
            PostmarkDocument {
                name: None,
                blake3: "bb",
            },
        ];
        let html = postmark_page(&page_with(&documents, "Contract"));

        assert!(html.contains("<td>Contract</td>"), "{html}");
        assert!(html.contains("<td>3</td>"), "{html}");
        assert!(html.contains("<td>42</td>"), "{html}");
        assert!(html.contains("<code>ab12</code>"), "{html}");
        assert!(
            html.contains(
                "<time datetime=\"2026-12-04T10:00:00.5Z\">2026-12-04 10:00:00.500000 UTC</time> \
                 (1796378400500000 microseconds since 1970-01-01 UTC)"
            ),
            "{html}"
        );
        assert!(
            html.contains("<tr><td>contract.pdf</td><td><code>aa</code></td></tr>"),
            "{html}"
        );
        assert!(
            html.contains("<tr><td><em>unknown name</em></td><td><code>bb</code></td></tr>"),
            "{html}"
        );
        assert!(
            html.contains("<code>ed25519-0123456789abcdef</code>"),
            "{html}"
        );
        assert!(html.contains("<code>cd34</code>"), "{html}");
        assert!(html.contains("<code>ef56</code>"), "{html}");
        assert!(html.contains("<code>0789</code>"), "{html}");
        assert!(
            html.contains("href=\"/.well-known/consign-postmark-keys.json\""),
            "{html}"
        );
        assert!(
            html.contains("postmark?format=json\">this receipt as JSON</a>"),
            "{html}"
        );
        assert!(!html.contains("<script"), "{html}");
    }

    #[test]
    fn page_escapes_sender_text() {
        let documents = [PostmarkDocument {
            name: Some(HOSTILE),
            blake3: "aa",
        }];
        let html = postmark_page(&page_with(&documents, HOSTILE));

        assert!(
            html.contains(&format!(
                "<td>{HOSTILE_ESCAPED}</td><td><code>aa</code></td>"
            )),
            "{html}"
        );
        assert!(
            html.contains(&format!("<td>{HOSTILE_ESCAPED}</td>")),
            "{html}"
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("\"quoted\""), "{html}");
        assert!(!html.contains("& more"), "{html}");
    }

    #[test]
    fn page_without_public_key_points_to_published_keys() {
        let mut page = page_with(&[], "Empty");
        page.public_key = None;
        let html = postmark_page(&page);

        assert!(
            html.contains("not on this server; see the published keys"),
            "{html}"
        );
        assert!(html.contains("The postmark signs no documents."), "{html}");
    }
}
