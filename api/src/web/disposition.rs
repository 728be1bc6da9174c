//! `Content-Disposition` header values for document downloads.
//!
//! The value has the form `attachment; filename="ASCII"; filename*=UTF-8''%XX...`
//! (RFC 6266 §4.3). Clients that understand the `filename*` parameter (RFC 8187) use
//! the full UTF-8 name, and older ones use the ASCII `filename` fallback. The name
//! comes from the sender, so both parameters are built only from bytes that cannot end
//! the header, start a new parameter or name a path.

use axum::http::HeaderValue;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Name used when nothing usable is left of the sender's file name.
const DEFAULT_NAME: &str = "document";

/// Maximum length of the cleaned name in UTF-8 bytes, the file name limit of ext4.
const MAX_NAME_BYTES: usize = 255;

/// Maximum extension length, in bytes including the dot, kept when a long name is
/// shortened.
const MAX_KEPT_EXTENSION_BYTES: usize = 16;

/// Bytes that RFC 8187 `value-chars` must percent-encode: everything except ALPHA,
/// DIGIT and the `attr-char` symbols `!#$&+-.^_`|~`.
const NOT_ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// Builds the `Content-Disposition` value that makes a browser save the response as
/// `file_name`.
///
/// Control characters (including CR, LF, NUL and the Unicode bidirectional controls
/// that can disguise an extension), `/` and `\` become `_` in both parameters. The ASCII
/// fallback also replaces every non-ASCII character, `"`, `%` and `\` with `_`. A name
/// that is empty or only dots and spaces becomes `document`, and a name longer than
/// 255 bytes is shortened, keeping a short extension.
pub(crate) fn content_disposition(file_name: &str) -> HeaderValue {
    let name = clean_name(file_name);
    let fallback = ascii_fallback(&name);
    let encoded = utf8_percent_encode(&name, NOT_ATTR_CHAR);
    let value = format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}");

    // Every byte of `value` is visible ASCII or a space, so this cannot fail. The
    // fallback keeps downloads working should that ever change.
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("attachment; filename=\"document\""))
}

/// Replaces control characters and path separators, trims surrounding whitespace and
/// limits the length.
fn clean_name(file_name: &str) -> String {
    let replaced: String = file_name
        .trim()
        .chars()
        .map(|c| if is_unsafe_char(c) { '_' } else { c })
        .collect();

    if replaced.chars().all(|c| c == '.' || c.is_whitespace()) {
        return DEFAULT_NAME.to_owned();
    }
    shorten(&replaced, MAX_NAME_BYTES)
}

/// Control characters (C0, DEL, C1), bidirectional formatting characters and path
/// separators.
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '/' | '\\')
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}')
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Shortens `name` to at most `max_bytes` UTF-8 bytes on a character boundary, keeping
/// an extension of up to 16 bytes so the saved file still opens with the right program.
fn shorten(name: &str, max_bytes: usize) -> String {
    if name.len() <= max_bytes {
        return name.to_owned();
    }
    let extension = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= MAX_KEPT_EXTENSION_BYTES => &name[dot..],
        _ => "",
    };
    let stem = &name[..name.len() - extension.len()];
    let mut stem_end = max_bytes - extension.len();
    while !stem.is_char_boundary(stem_end) {
        stem_end -= 1;
    }
    format!("{}{extension}", &stem[..stem_end])
}

/// Returns the `filename` parameter: one ASCII character per character of `name`, with
/// everything that is not printable ASCII or would need quoting as `_`.
fn ascii_fallback(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '"' | '\\' | '%' => '_',
            ' '..='~' => c,
            _ => '_',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disposition(name: &str) -> String {
        content_disposition(name)
            .to_str()
            .expect("header value is visible ASCII")
            .to_owned()
    }

    /// Splits a value into its `filename` and decoded `filename*` parameters.
    fn parameters(value: &str) -> (String, String) {
        let rest = value
            .strip_prefix("attachment; filename=\"")
            .expect("prefix");
        let (fallback, rest) = rest.split_once("\"; filename*=UTF-8''").expect("separator");
        let decoded = percent_encoding::percent_decode_str(rest)
            .decode_utf8()
            .expect("filename* is UTF-8")
            .into_owned();
        (fallback.to_owned(), decoded)
    }

    fn assert_header_safe(value: &str) {
        assert!(
            value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
            "non-visible byte in {value:?}"
        );
    }

    #[test]
    fn latin_name_is_kept() {
        let value = disposition("Rechnung März.pdf");
        assert_header_safe(&value);
        assert_eq!(
            value,
            "attachment; filename=\"Rechnung M_rz.pdf\"; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf"
        );
    }

    #[test]
    fn plain_ascii_name() {
        let value = disposition("report-2026_v2.pdf");
        assert_eq!(
            value,
            "attachment; filename=\"report-2026_v2.pdf\"; filename*=UTF-8''report-2026_v2.pdf"
        );
    }

    #[test]
    fn non_latin_scripts_round_trip() {
        for name in [
            "Договор аренды.pdf",
            "契約書.pdf",
            "عقد الإيجار.pdf",
            "Ελληνικά.txt",
            "📄 contract 🖋️.pdf",
        ] {
            let value = disposition(name);
            assert_header_safe(&value);
            let (fallback, decoded) = parameters(&value);
            assert_eq!(decoded, name, "filename* of {name:?}");
            assert_eq!(
                fallback.chars().count(),
                name.chars().count(),
                "fallback of {name:?}"
            );
            assert!(fallback.ends_with(&name[name.rfind('.').unwrap()..]));
        }
    }

    #[test]
    fn cyrillic_fallback_is_underscores() {
        let (fallback, _) = parameters(&disposition("Договор.pdf"));
        assert_eq!(fallback, "_______.pdf");
    }

    #[test]
    fn quotes_and_backslashes_replaced() {
        let value = disposition(r#"say "hi" \o/ 100%.txt"#);
        assert_header_safe(&value);
        let (fallback, decoded) = parameters(&value);
        assert_eq!(fallback, "say _hi_ _o_ 100_.txt");
        assert_eq!(decoded, r#"say "hi" _o_ 100%.txt"#);
        assert!(value.contains("filename*=UTF-8''say%20%22hi%22%20_o_%20100%25.txt"));
    }

    #[test]
    fn path_traversal_is_flattened() {
        let (fallback, decoded) = parameters(&disposition("../../etc/passwd"));
        assert_eq!(fallback, ".._.._etc_passwd");
        assert_eq!(decoded, ".._.._etc_passwd");

        let (fallback, _) = parameters(&disposition(r"..\..\windows\system.ini"));
        assert_eq!(fallback, ".._.._windows_system.ini");
    }

    #[test]
    fn header_injection_is_neutralised() {
        let value = disposition("a\r\nSet-Cookie: x");
        assert_header_safe(&value);
        assert!(!value.contains('\r'));
        assert!(!value.contains('\n'));
        let (fallback, decoded) = parameters(&value);
        assert_eq!(fallback, "a__Set-Cookie: x");
        assert_eq!(decoded, "a__Set-Cookie: x");
    }

    #[test]
    fn nul_and_other_controls_replaced() {
        let value = disposition("a\0b\x07c\x7fd\u{85}e.txt");
        assert_header_safe(&value);
        let (fallback, decoded) = parameters(&value);
        assert_eq!(fallback, "a_b_c_d_e.txt");
        assert_eq!(decoded, "a_b_c_d_e.txt");
    }

    #[test]
    fn bidi_override_cannot_hide_extension() {
        let (_, decoded) = parameters(&disposition("invoice\u{202E}fdp.exe"));
        assert_eq!(decoded, "invoice_fdp.exe");
    }

    #[test]
    fn empty_and_dot_names_become_document() {
        for name in ["", " ", ".", "..", "...", " . . ", "\t"] {
            let (fallback, decoded) = parameters(&disposition(name));
            assert_eq!(fallback, "document", "fallback of {name:?}");
            assert_eq!(decoded, "document", "filename* of {name:?}");
        }
    }

    #[test]
    fn surrounding_whitespace_trimmed() {
        let (fallback, _) = parameters(&disposition("  notes.txt  "));
        assert_eq!(fallback, "notes.txt");
    }

    #[test]
    fn long_name_keeps_extension() {
        let name = format!("{}.pdf", "я".repeat(300));
        let (fallback, decoded) = parameters(&disposition(&name));
        assert!(decoded.len() <= MAX_NAME_BYTES, "{} bytes", decoded.len());
        assert!(decoded.ends_with(".pdf"));
        assert!(decoded.starts_with("яя"));
        assert!(fallback.ends_with(".pdf"));
    }

    #[test]
    fn long_name_without_extension() {
        let name = "x".repeat(1000);
        let (_, decoded) = parameters(&disposition(&name));
        assert_eq!(decoded.len(), MAX_NAME_BYTES);
    }

    #[test]
    fn every_char_gives_safe_header() {
        let mut name = String::new();
        for code in (0u32..0x3000).chain(0x1F300..0x1F400) {
            if let Some(c) = char::from_u32(code) {
                name.push(c);
            }
            if name.len() > 200 {
                let value = disposition(&name);
                assert_header_safe(&value);
                name.clear();
            }
        }
    }
}
