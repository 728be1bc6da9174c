//! Checks on user-given text: lengths, and no control characters where a line break
//! could end up in an e-mail header.

use super::error::ApiError;

/// Checks a one-line field (subject, name, billing code): not longer than `max_chars`,
/// and free of control characters, CR and LF included, and of the invisible characters
/// that [`is_hidden`] lists. Positions in messages count characters from 1.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `field`, naming the problem and where it is.
pub fn check_line(field: &str, value: &str, max_chars: usize) -> Result<(), ApiError> {
    if let Some((index, character)) = value.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field} contains the control character U+{:04X} at character {}; it must \
                 be one line of text",
                u32::from(character),
                index + 1
            ),
        ));
    }
    if let Some((index, character)) = first_hidden(value) {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field} contains the invisible character U+{:04X} at character {}, which \
                 can hide text or show it in another order than it is read; remove it",
                u32::from(character),
                index + 1
            ),
        ));
    }
    check_length(field, value, max_chars)
}

/// Returns true when `value` has nothing a reader can see: only whitespace, and the
/// direction marks and joiners that [`is_hidden`] allows.
pub fn is_blank(value: &str) -> bool {
    value.chars().all(|c| {
        c.is_whitespace()
            || matches!(
                c,
                '\u{061C}' | '\u{200C}' | '\u{200D}' | '\u{200E}' | '\u{200F}'
            )
    })
}

/// Finds the first character that [`is_hidden`] rejects, with its index. Tag
/// characters (U+E0020 to U+E007F) pass only in a tag sequence after the black flag
/// U+1F3F4, as in the flags of England, Scotland and Wales.
fn first_hidden(value: &str) -> Option<(usize, char)> {
    let mut in_tag_sequence = false;
    for (index, c) in value.chars().enumerate() {
        let tag = ('\u{E0020}'..='\u{E007F}').contains(&c);
        if (tag && !in_tag_sequence) || (!tag && is_hidden(c)) {
            return Some((index, c));
        }
        in_tag_sequence = c == '\u{1F3F4}' || (tag && c != '\u{E007F}');
    }
    None
}

/// Returns true for characters that show nothing and can hide text or reorder it.
/// These are the bidirectional embeddings, overrides and isolates (U+202A to U+202E,
/// U+2066 to U+2069), the zero-width space (U+200B), the word joiner and invisible
/// operators (U+2060 to U+2064), and the byte order mark (U+FEFF). So are the line and
/// paragraph separators (U+2028, U+2029), the Mongolian vowel separator (U+180E), the
/// Hangul fillers (U+115F, U+1160, U+3164, U+FFA0), the interlinear annotation
/// characters (U+FFF9 to U+FFFB) and the tag characters (U+E0000 to U+E007F). The
/// direction marks and the zero-width joiners stay allowed, because right-to-left
/// scripts, Persian and emoji need them.
fn is_hidden(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200B}'
            | '\u{2060}'..='\u{2064}'
            | '\u{FEFF}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{180E}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{3164}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// Checks a multi-line field (the message): line breaks and tabs are allowed, other
/// control characters are not.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `field`.
pub fn check_text(field: &str, value: &str, max_chars: usize) -> Result<(), ApiError> {
    let bad = value
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !matches!(c, '\n' | '\r' | '\t'));
    if let Some((index, character)) = bad {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field} contains the control character U+{:04X} at character {}",
                u32::from(character),
                index + 1
            ),
        ));
    }
    check_length(field, value, max_chars)
}

fn check_length(field: &str, value: &str, max_chars: usize) -> Result<(), ApiError> {
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(ApiError::invalid(
            field,
            format!("{field} has {chars} characters; the maximum is {max_chars}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_rejects_line_breaks_naming_the_field() {
        let error = check_line("subject", "Hello\r\nBcc: x@example.com", 200).unwrap_err();
        let message = error.to_string();

        assert!(message.contains("subject"), "{message}");
        assert!(message.contains("U+000D"), "{message}");
    }

    #[test]
    fn text_allows_line_breaks_but_not_nul() {
        assert!(check_text("message", "line one\r\nline two\ttab", 100).is_ok());
        assert!(check_text("message", "nul\0here", 100).is_err());
    }

    #[test]
    fn line_rejects_hidden_characters() {
        for (value, code) in [
            ("a\u{202E}b", "U+202E"),
            ("a\u{2067}b", "U+2067"),
            ("LEGAL\u{200B}-7", "U+200B"),
            ("\u{FEFF}Contract", "U+FEFF"),
            ("one\u{2028}two", "U+2028"),
        ] {
            let message = check_line("billing_code", value, 64)
                .unwrap_err()
                .to_string();
            assert!(message.contains(code), "{message}");
            assert!(message.contains("remove it"), "{message}");
        }
    }

    #[test]
    fn line_rejects_other_invisible_characters() {
        for value in [
            "team\u{2060}",
            "a\u{2062}b",
            "\u{3164}",
            "a\u{FFF9}b\u{FFFB}",
            "x\u{180E}y",
            "lone tag \u{E0041}",
        ] {
            let message = check_line("name", value, 64).unwrap_err().to_string();
            assert!(
                message.contains("invisible character"),
                "{value:?}: {message}"
            );
        }
        let message = check_line("subject", "a\u{202E}b", 64)
            .unwrap_err()
            .to_string();
        assert!(message.contains("at character 2"), "{message}");
    }

    #[test]
    fn line_keeps_flag_tag_sequences() {
        // The flag of Scotland: black flag, tags g b s c t, cancel tag.
        let scotland = "\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}";
        assert!(check_line("subject", &format!("Minutes {scotland}"), 64).is_ok());
        let after_cancel = format!("{scotland}\u{E0067}");
        assert!(check_line("subject", &after_cancel, 64).is_err());
    }

    #[test]
    fn blank_ignores_marks() {
        assert!(is_blank("\u{200E}"));
        assert!(is_blank(" \u{200F} "));
        assert!(!is_blank("\u{05D0}"));
    }

    #[test]
    fn line_keeps_marks_and_joiners() {
        assert!(
            check_line(
                "subject",
                "\u{05E9}\u{05DC}\u{05D5}\u{05DD}\u{200F} 2026",
                64
            )
            .is_ok()
        );
        assert!(check_line("name", "\u{0645}\u{06CC}\u{200C}\u{062E}", 64).is_ok());
        assert!(check_line("subject", "\u{1F469}\u{200D}\u{1F4BB}", 64).is_ok());
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert!(check_line("subject", &"é".repeat(10), 10).is_ok());
        assert!(check_line("subject", &"é".repeat(11), 10).is_err());
    }
}
