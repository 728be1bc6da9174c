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

/// Returns true when `value` has nothing a reader can see: only whitespace, the
/// braille blank, and characters that only modify others, such as the direction marks,
/// joiners, variation selectors and combining accents that [`first_hidden`] allows.
pub fn is_blank(value: &str) -> bool {
    value.chars().all(|c| {
        c.is_whitespace()
            || matches!(
                c,
                '\u{061C}'
                    | '\u{200C}'..='\u{200F}'
                    | '\u{2800}'
                    | '\u{FE00}'..='\u{FE0F}'
                    | '\u{E0100}'..='\u{E01EF}'
                    | '\u{180B}'..='\u{180D}'
                    | '\u{180F}'
                    | '\u{0300}'..='\u{036F}'
                    | '\u{1AB0}'..='\u{1AFF}'
                    | '\u{1DC0}'..='\u{1DFF}'
                    | '\u{20D0}'..='\u{20FF}'
                    | '\u{FE20}'..='\u{FE2F}'
            )
    })
}

/// Finds the first character that [`is_hidden`] rejects, with its index. Tag
/// characters (U+E0000 to U+E007F) pass only in a well-formed flag: the black flag
/// U+1F3F4, two to six tags of lowercase letters or digits, and the cancel tag U+E007F,
/// as in the flags of England, Scotland and Wales.
fn first_hidden(value: &str) -> Option<(usize, char)> {
    let chars: Vec<char> = value.chars().collect();
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        if c == '\u{1F3F4}' {
            let spec = chars[index + 1..]
                .iter()
                .take_while(|&&tag| {
                    ('\u{E0061}'..='\u{E007A}').contains(&tag)
                        || ('\u{E0030}'..='\u{E0039}').contains(&tag)
                })
                .count();
            let end = index + 1 + spec;
            if spec > 0 {
                if (2..=6).contains(&spec) && chars.get(end) == Some(&'\u{E007F}') {
                    index = end + 1;
                    continue;
                }
                return Some((index + 1, chars[index + 1]));
            }
        } else if is_hidden(c) {
            return Some((index, c));
        }
        index += 1;
    }
    None
}

/// Returns true for characters that show nothing and can hide text or reorder it.
/// These are the Unicode default-ignorable characters, except the direction marks
/// (U+061C, U+200E, U+200F), the zero-width joiners (U+200C, U+200D) and the variation
/// selectors, which right-to-left scripts, Persian, Mongolian and emoji need. So are
/// the line and paragraph separators (U+2028, U+2029) and the interlinear annotation
/// characters (U+FFF9 to U+FFFB).
fn is_hidden(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E00FF}'
            | '\u{E01F0}'..='\u{E0FFF}'
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
            "soft\u{00AD}hyphen",
            "a\u{206A}b",
            "a\u{034F}b",
            "a\u{1BCA0}b",
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
        assert!(check_line("subject", "\u{1F3F4} black flag", 64).is_ok());
        let tags = |text: &str| -> String {
            text.chars()
                .map(|c| char::from_u32(0xE0000 + u32::from(c)).unwrap())
                .collect()
        };
        for malformed in [
            format!("{scotland}\u{E0067}"),
            format!("\u{1F3F4}{}\u{E007F}", tags("gbschiddenpayloadtext")),
            format!("\u{1F3F4}{}\u{E007F}", tags("GBSCT")),
            format!("\u{1F3F4}{}", tags("gbsct")),
            "\u{1F3F4}\u{E007F}".to_owned(),
        ] {
            assert!(
                check_line("subject", &malformed, 64).is_err(),
                "{malformed:?}"
            );
        }
    }

    #[test]
    fn blank_ignores_marks() {
        assert!(is_blank("\u{200E}"));
        assert!(is_blank(" \u{200F} "));
        assert!(is_blank("\u{0301}"));
        assert!(is_blank("\u{2800}\u{FE0F}"));
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
