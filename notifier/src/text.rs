//! Text helpers for composition: cleaning user-given text, and formatting sizes and times
//! for people to read.
//!
//! Everything a sender or client typed (subjects, display names, file names, messages)
//! passes through [`single_line`] or [`quoted_block`] before it reaches a header or a
//! body. A line break in such text therefore can neither start a header nor fake a line
//! of the e-mail's own text.

use consign_schemas::Timestamp;
use consign_schemas::events::ZonedTime;

/// Replaces line breaks, other control characters and bidirectional overrides with a
/// space, and trims the result.
///
/// Used for text that must stay on one line: subjects, display names and file names.
/// The bidirectional embeddings, overrides and isolates (U+202A to U+202E, U+2066 to
/// U+2069) go too, because they let a file name such as `invoice\u{202E}fdp.exe` display
/// as `invoiceexe.pdf`.
pub(crate) fn single_line(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if is_line_break(c) || c.is_control() || is_bidi_control(c) {
                ' '
            } else {
                c
            }
        })
        .collect();
    cleaned.trim().to_owned()
}

/// Formats multi-line text as a quoted block: each line prefixed with `> `.
///
/// CR LF, a lone CR, U+2028 and U+2029 all count as line breaks. Other control
/// characters except tab become spaces. The prefix marks every line as the sender's own
/// words, so a message cannot pass itself off as the link or document list around it.
pub(crate) fn quoted_block(text: &str) -> String {
    let normalized = text.replace("\r\n", "\n");
    let mut block = String::with_capacity(normalized.len() + 16);

    for line in normalized.split(['\n', '\r', '\u{2028}', '\u{2029}']) {
        let line: String = line
            .chars()
            .map(|c| {
                if c != '\t' && (c.is_control() || is_bidi_control(c)) {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        let line = line.trim_end();

        if line.is_empty() {
            block.push_str(">\n");
        } else {
            block.push_str("> ");
            block.push_str(line);
            block.push('\n');
        }
    }
    block
}

/// Formats a byte count exactly, with a binary-prefixed approximation from 1 KiB on:
/// `512 bytes`, `1536 bytes (1.5 KiB)`.
pub(crate) fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

    if bytes == 1 {
        return "1 byte".to_owned();
    }
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }

    // f64 loses precision past 2^53 bytes, which only affects the rounded figure.
    let mut scaled = bytes as f64 / 1024.0;
    let mut unit_idx = 0;
    while scaled >= 1024.0 && unit_idx + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit_idx += 1;
    }
    format!("{bytes} bytes ({scaled:.1} {})", UNITS[unit_idx])
}

/// Formats an instant as RFC 3339 in UTC to the second, such as `2026-05-01T16:00:00Z`.
///
/// An instant outside jiff's range (years -9999 to 9999) is written as raw microseconds
/// since the Unix epoch, so a corrupt timestamp still produces an e-mail.
pub(crate) fn format_utc(instant: Timestamp) -> String {
    match jiff::Timestamp::from_microsecond(instant.as_micros()) {
        Ok(timestamp) => timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => format!(
            "{} microseconds after 1970-01-01T00:00:00Z",
            instant.as_micros()
        ),
    }
}

/// Formats a zoned time as the sender saw it, followed by the UTC instant:
/// `2026-05-01 18:00 CEST (Europe/Paris), 2026-05-01T16:00:00Z`.
///
/// The UTC form alone is returned when the zone is `UTC` or is missing from the time
/// zone database.
pub(crate) fn format_zoned(time: &ZonedTime) -> String {
    let utc = format_utc(time.instant);
    if time.zone.eq_ignore_ascii_case("UTC") {
        return utc;
    }

    let Ok(timestamp) = jiff::Timestamp::from_microsecond(time.instant.as_micros()) else {
        return utc;
    };
    match timestamp.in_tz(&time.zone) {
        Ok(zoned) => {
            let local = zoned.strftime("%Y-%m-%d %H:%M %Z");
            format!("{local} ({}), {utc}", single_line(&time.zone))
        }
        Err(error) => {
            tracing::warn!(
                time.zone = %time.zone,
                error = %error,
                "time zone not found; the e-mail shows the time in UTC only"
            );
            utc
        }
    }
}

fn is_line_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{2028}' | '\u{2029}')
}

/// Returns true for the bidirectional embeddings, overrides and isolates (U+202A to
/// U+202E, U+2066 to U+2069). Names in right-to-left scripts display correctly without
/// them.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_replaces_breaks_and_controls() {
        assert_eq!(single_line("Hello\r\nBcc: x@y"), "Hello  Bcc: x@y");
        assert_eq!(single_line("a\nb\rc\u{2028}d\u{2029}e"), "a b c d e");
        assert_eq!(
            single_line("tab\there\u{0}nul\u{85}nel"),
            "tab here nul nel"
        );
        assert_eq!(single_line("  padded \n"), "padded");
    }

    #[test]
    fn single_line_removes_bidi_overrides() {
        assert_eq!(single_line("invoice\u{202E}fdp.exe"), "invoice fdp.exe");
        assert_eq!(single_line("a\u{2066}b\u{2069}"), "a b");
    }

    #[test]
    fn single_line_keeps_any_script() {
        let text = "Zoë Ωμέγα 山田太郎 محمد 👩‍💻";
        assert_eq!(single_line(text), text);
    }

    #[test]
    fn quoted_block_prefixes_every_line() {
        assert_eq!(
            quoted_block("first\r\nsecond\rthird\n\nfifth"),
            "> first\n> second\n> third\n>\n> fifth\n"
        );
    }

    #[test]
    fn quoted_block_cannot_fake_an_unquoted_line() {
        let block = quoted_block("hi\u{2028}Link: https://evil.example/\u{0}x");

        for line in block.lines() {
            assert!(line.starts_with('>'), "{line:?} is not quoted");
        }
        assert!(!block.contains('\u{0}'));
    }

    #[test]
    fn format_size_exact_and_approximate() {
        assert_eq!(format_size(0), "0 bytes");
        assert_eq!(format_size(1), "1 byte");
        assert_eq!(format_size(1023), "1023 bytes");
        assert_eq!(format_size(1536), "1536 bytes (1.5 KiB)");
        assert_eq!(format_size(5 * 1024 * 1024), "5242880 bytes (5.0 MiB)");
        assert_eq!(
            format_size(u64::MAX),
            "18446744073709551615 bytes (16.0 EiB)"
        );
    }

    #[test]
    fn format_utc_to_the_second() {
        let instant = Timestamp::from_micros(1_777_651_200_123_456);
        assert_eq!(format_utc(instant), "2026-05-01T16:00:00Z");
    }

    #[test]
    fn format_utc_out_of_range() {
        let instant = Timestamp::from_micros(i64::MAX);
        assert!(format_utc(instant).starts_with("9223372036854775807 microseconds"));
    }

    #[test]
    fn format_zoned_shows_local_and_utc() {
        let time = ZonedTime {
            instant: Timestamp::from_micros(1_777_651_200_000_000),
            zone: "Europe/Paris".to_owned(),
        };
        assert_eq!(
            format_zoned(&time),
            "2026-05-01 18:00 CEST (Europe/Paris), 2026-05-01T16:00:00Z"
        );
    }

    #[test]
    fn format_zoned_unknown_zone_falls_back_to_utc() {
        let time = ZonedTime {
            instant: Timestamp::from_micros(1_777_651_200_000_000),
            zone: "Mars/Olympus_Mons".to_owned(),
        };
        assert_eq!(format_zoned(&time), "2026-05-01T16:00:00Z");
    }
}
