//! Checks on user-given text: lengths, and no control characters where a line break
//! could end up in an e-mail header.

use super::error::ApiError;

/// Checks a one-line field (subject, name, billing code): not longer than `max_chars`,
/// and free of control characters, CR and LF included.
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
    check_length(field, value, max_chars)
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
    fn length_counts_characters_not_bytes() {
        assert!(check_line("subject", &"é".repeat(10), 10).is_ok());
        assert!(check_line("subject", &"é".repeat(11), 10).is_err());
    }
}
