//! Checks on user-given text: lengths, and no control characters where a line break
//! could end up in an e-mail header.

use super::error::ApiError;

/// Checks a one-line field (subject, name, billing code): not longer than `max_chars`,
/// and free of control characters, CR and LF included, and of the invisible characters
/// that [`is_hidden`] lists.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `field`, naming the problem and where it is.
pub fn check_line(field: &str, value: &str, max_chars: usize) -> Result<(), ApiError> {
    if let Some((index, character)) = value.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field} contains the control character U+{:04X} at character {index}; \
                 it must be one line of text",
                u32::from(character)
            ),
        ));
    }
    if let Some((index, character)) = value.chars().enumerate().find(|(_, c)| is_hidden(*c)) {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field} contains the invisible character U+{:04X} at character {index}, \
                 which can hide text or show it in another order than it is read; remove it",
                u32::from(character)
            ),
        ));
    }
    check_length(field, value, max_chars)
}

/// Returns true for the bidirectional embeddings, overrides and isolates (U+202A to
/// U+202E, U+2066 to U+2069), the zero-width space (U+200B), the byte order mark
/// (U+FEFF) and the line and paragraph separators (U+2028, U+2029). The
/// left-to-right and right-to-left marks and the zero-width joiners stay allowed,
/// because right-to-left scripts, Persian and emoji need them.
fn is_hidden(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200B}'
            | '\u{FEFF}'
            | '\u{2028}'
            | '\u{2029}'
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
                "{field} contains the control character U+{:04X} at character {index}",
                u32::from(character)
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
