//! Checks on the file name a client sends with a document. The name is metadata only
//! and never part of a path, but names that look like paths or carry characters a reader
//! cannot see are rejected so that no reader of the ledger is misled by them.

use std::fmt::Write as _;

use unicode_normalization::UnicodeNormalization;

use super::error::ApiError;

/// Maximum length of a file name in bytes, as on common filesystems.
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Quotes a value that a client sent, for an error message.
///
/// The value appears as sent between double quotes, because the JSON body of the
/// error escapes `"` and `\` once itself, and Rust's `{:?}` would escape them a second
/// time. Characters that a reader cannot see (see [`is_invisible`]) are written as
/// `<U+XXXX>`.
pub fn quoted(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if is_invisible(c) {
            let _ = write!(quoted, "{}", code_point(c));
        } else {
            quoted.push(c);
        }
    }
    quoted.push('"');
    quoted
}

/// Returns a character's code point as `<U+XXXX>`, the form [`quoted`] shows it in.
fn code_point(c: char) -> String {
    format!("<U+{:04X}>", u32::from(c))
}

/// Returns true for a character that a reader cannot see: a control character, a
/// bidirectional control, or one of [`is_zero_width_or_separator`].
fn is_invisible(c: char) -> bool {
    c.is_control() || is_bidi_control(c) || is_zero_width_or_separator(c)
}

/// Returns true for the characters of the Unicode property Bidi_Control: the Arabic
/// letter mark (U+061C), the left-to-right and right-to-left marks (U+200E, U+200F),
/// the embeddings and overrides (U+202A to U+202E) and the isolates (U+2066 to U+2069).
///
/// This is the notifier's `is_bidi_control` plus the three marks. The notifier keeps
/// the marks in e-mail text, where they order right-to-left words correctly.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Returns true for the zero-width space (U+200B), the zero-width no-break space or
/// byte order mark (U+FEFF), and the line and paragraph separators (U+2028, U+2029).
fn is_zero_width_or_separator(c: char) -> bool {
    matches!(c, '\u{200B}' | '\u{FEFF}' | '\u{2028}' | '\u{2029}')
}

/// Checks a document's file name.
///
/// Every character that the download's Content-Disposition would replace with `_` is
/// rejected here (see `content_disposition` in `crate::web::disposition`), and so is a
/// name that the download would save as `document`. The name a recipient saves is
/// therefore the name recorded, apart from the surrounding whitespace that both trim.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `field` for a missing or empty name, a name with a control
/// character, a bidirectional control, a zero-width space, a byte order mark, a line or
/// paragraph separator, `/` or `\`, a name of only dots and spaces, or more than 255
/// bytes.
pub fn check_file_name(field: &str, name: Option<&str>) -> Result<String, ApiError> {
    let name = name.map(str::trim).unwrap_or("");
    let problem = if name.is_empty() {
        Some("is missing; send each document with a filename in its Content-Disposition".to_owned())
    } else if let Some(c) = name.chars().find(|c| c.is_control()) {
        Some(format!(
            "contains the control character U+{:04X}",
            u32::from(c)
        ))
    } else if let Some(c) = name.chars().find(|c| is_bidi_control(*c)) {
        Some(format!(
            "contains the bidirectional control {}, which is invisible and can make a name \
             display in another order than it is read, such as with a false extension; \
             remove it",
            code_point(c)
        ))
    } else if let Some(c) = name.chars().find(|c| is_zero_width_or_separator(*c)) {
        Some(format!(
            "contains the invisible character {}, which a recipient cannot see in the name; \
             remove it",
            code_point(c)
        ))
    } else if name.contains('/') || name.contains('\\') {
        Some("contains a path separator; send the file name alone, without folders".to_owned())
    } else if name == "." || name == ".." {
        Some("is a directory name; send the document's own name".to_owned())
    } else if name.chars().all(|c| c == '.' || c.is_whitespace()) {
        Some(
            "is only dots and spaces, which a download would save as \"document\"; send the \
             document's own name"
                .to_owned(),
        )
    } else if name.len() > MAX_FILE_NAME_BYTES {
        Some(format!(
            "is {} bytes long; the maximum is {MAX_FILE_NAME_BYTES}",
            name.len()
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ApiError::invalid(
            field,
            format!(
                "{field} {} {problem}",
                quoted(&name.chars().take(80).collect::<String>())
            ),
        )),
        None => Ok(name.to_owned()),
    }
}

/// Rejects a file name that an earlier document of the same delivery has, because a
/// recipient could not tell the two documents apart.
///
/// Names are compared after [`check_file_name`] trimmed them, in Unicode NFC and in
/// lowercase (see [`comparison_key`]). `Report.pdf` and `report.pdf` are therefore one
/// name, which Windows and macOS would also save to one file, and so are `März.pdf`
/// with a precomposed `ä` and with `a` followed by U+0308. Each name is stored as sent.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `field`, naming the index of the earlier document.
pub fn check_unique_file_name<'a>(
    field: &str,
    name: &str,
    earlier: impl IntoIterator<Item = &'a str>,
) -> Result<(), ApiError> {
    let key = comparison_key(name);
    let Some((index, other)) = earlier
        .into_iter()
        .enumerate()
        .find(|(_, other)| comparison_key(other) == key)
    else {
        return Ok(());
    };
    let sameness = if other == name {
        "is also the file name of".to_owned()
    } else {
        format!(
            "differs only in letter case or Unicode normalization from {}, the file name of",
            quoted(other)
        )
    };
    Err(ApiError::invalid(
        field,
        format!(
            "{field} {} {sameness} documents[{index}]; a recipient could not tell the two \
             apart, so give each document of a delivery its own name",
            quoted(name)
        ),
    ))
}

/// Returns the form in which two file names are compared: NFC, then lowercase, then NFC
/// again, because Unicode does not guarantee that lowercasing keeps a string in NFC.
fn comparison_key(name: &str) -> String {
    name.nfc()
        .collect::<String>()
        .to_lowercase()
        .nfc()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_controls_in_file_names_rejected() {
        for name in ["invoice\u{202E}fdp.exe", "a\u{2066}b.txt", "x\u{202A}.pdf"] {
            let error = check_file_name("f", Some(name)).unwrap_err().to_string();
            assert!(error.contains("bidirectional control"), "{name:?}: {error}");
        }
    }

    #[test]
    fn file_names_in_any_script_pass() {
        for name in [
            "Vertrag.pdf",
            "договор.pdf",
            "合同.pdf",
            "عقد.pdf",
            "📄 notes.txt",
        ] {
            assert_eq!(check_file_name("f", Some(name)).unwrap(), name);
        }
    }

    #[test]
    fn hostile_file_names_are_rejected_naming_the_field() {
        for name in [
            "../../etc/passwd",
            "a\\b",
            "line\r\nbreak",
            "nul\0",
            "..",
            "",
        ] {
            let error = check_file_name("documents[0].file_name", Some(name)).unwrap_err();
            assert!(
                error.to_string().contains("documents[0].file_name"),
                "{name:?}: {error}"
            );
        }
        assert!(check_file_name("f", None).is_err());
        assert!(check_file_name("f", Some(&"x".repeat(256))).is_err());
    }

    #[test]
    fn quoted_shows_backslash_once() {
        assert_eq!(quoted(r#"a\b"c"#), r#""a\b"c""#);
        assert_eq!(
            quoted("x\ty\u{85}\u{202E}"),
            r#""x<U+0009>y<U+0085><U+202E>""#
        );
        assert_eq!(
            quoted("\u{200E}\u{61C}\u{200B}\u{FEFF}\u{2028}"),
            r#""<U+200E><U+061C><U+200B><U+FEFF><U+2028>""#
        );
    }

    #[test]
    fn repeated_file_name_names_earlier_index() {
        let earlier = ["a.pdf", "b.pdf"];
        assert!(check_unique_file_name("f", "c.pdf", earlier).is_ok());
        let error = check_unique_file_name("documents[2].file_name", "b.pdf", earlier)
            .unwrap_err()
            .to_string();
        assert!(error.contains("documents[1]"), "{error}");
        assert!(error.contains("is also the file name of"), "{error}");
    }

    #[test]
    fn file_names_compared_in_nfc_and_lowercase() {
        let pairs = [
            ("Same.txt", "same.txt"),
            ("M\u{E4}rz.txt", "Ma\u{308}rz.txt"),
            ("MA\u{308}RZ.TXT", "m\u{E4}rz.txt"),
            ("\u{212B}ngstr\u{F6}m.pdf", "\u{C5}ngstr\u{F6}m.pdf"),
        ];
        for (first, second) in pairs {
            let error = check_unique_file_name("documents[1].file_name", second, [first])
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("documents[0]"),
                "{first:?} {second:?}: {error}"
            );
            assert!(
                error.contains("differs only in letter case or Unicode normalization"),
                "{first:?} {second:?}: {error}"
            );
        }
        assert!(check_unique_file_name("f", "Marz.txt", ["M\u{E4}rz.txt"]).is_ok());
    }

    #[test]
    fn invisible_characters_rejected_by_code_point() {
        let cases = [
            ("a\u{200E}b.txt", "bidirectional control <U+200E>"),
            ("a\u{200F}b.txt", "bidirectional control <U+200F>"),
            ("a\u{61C}b.txt", "bidirectional control <U+061C>"),
            ("a\u{200B}b.txt", "invisible character <U+200B>"),
            ("a\u{FEFF}b.txt", "invisible character <U+FEFF>"),
            ("a\u{2028}b.txt", "invisible character <U+2028>"),
            ("a\u{2029}b.txt", "invisible character <U+2029>"),
        ];
        for (name, problem) in cases {
            let error = check_file_name("f", Some(name)).unwrap_err().to_string();
            assert!(error.contains(problem), "{name:?}: {error}");
            let quoted_name = format!("\"a{}b.txt\"", &problem[problem.len() - 8..]);
            assert!(error.contains(&quoted_name), "{name:?}: {error}");
        }
    }

    #[test]
    fn dot_only_names_rejected() {
        for name in ["...", ". .", ". . ."] {
            let error = check_file_name("f", Some(name)).unwrap_err().to_string();
            assert!(error.contains("only dots and spaces"), "{name:?}: {error}");
        }
        assert!(check_file_name("f", Some(".profile")).is_ok());
    }

    /// Every name that passes the check downloads under the same name, because the
    /// check rejects each character that the download's Content-Disposition replaces.
    #[test]
    fn accepted_names_download_unchanged() {
        for code in 0..=u32::from(char::MAX) {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            let name = format!("a{c}b.txt");
            let Ok(checked) = check_file_name("f", Some(&name)) else {
                continue;
            };
            let header = crate::web::disposition::content_disposition(&checked);
            let header = header.to_str().unwrap();
            let encoded = header.split("filename*=UTF-8''").nth(1).unwrap();
            let downloaded = percent_encoding::percent_decode_str(encoded)
                .decode_utf8()
                .unwrap();
            assert_eq!(downloaded, checked, "U+{code:04X}");
        }
    }
}
