//! Sender-entered times: parses a delivery or expiration date typed by a sender
//! and renders it back for e-mails and pages. This module owns no state.
//!
//! A sender writes either an RFC 3339 time with an offset
//! (`2027-03-28T02:30:00+01:00`, `2027-03-28T01:30:00Z`) or a local date-time plus
//! an IANA zone name (`2027-03-28T02:30` with `Europe/Paris`). The result is a
//! [`ZonedTime`]: the UTC instant plus the zone name, which is what the ledger stores.
//!
//! # Daylight-saving changes
//!
//! - A local time that the zone skips (the spring-forward gap, such as
//!   2027-03-28T02:30 in Europe/Paris) is rejected with
//!   [`TimeInputError::SkippedLocalTime`]. The error names the last second before
//!   the gap and the first time after it (01:59:59 and 03:00 local in that example).
//!   A delivery or expiry at a time that never shows on the clock is almost
//!   certainly a mistake, so the sender has to choose.
//! - A local time that occurs twice (the fall-back fold, such as 2027-10-31T02:30 in
//!   Europe/Paris) resolves to the earlier of the two instants: the first occurrence,
//!   still on summer time. [`resolve_sender_time`] reports this choice as
//!   [`Resolution::EarlierOfFold`] with the later instant, so the API can tell the
//!   sender, who can enter the offset form to get the other one.
//! - A time with an explicit offset names one instant, so no rule applies.

use jiff::civil::DateTime;
use jiff::fmt::temporal::{Pieces, PiecesOffset};
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};
use jiff::{SignedDuration, Timestamp, ZonedDateTime};

use consign_schemas::events::ZonedTime;

/// Years a sender may enter, as written in the local date. jiff's `Timestamp::MAX` is
/// late on 9999-12-30 UTC, so 9998 is the last year whole in every offset. Earlier years
/// cannot be delivery or expiration dates.
const ACCEPTED_YEARS: std::ops::RangeInclusive<i16> = 1970..=9998;

/// The accepted input forms, appended to parse errors.
const ACCEPTED_FORMS: &str = "expected an RFC 3339 time with offset such as \
    2027-03-28T02:30:00+01:00 or 2027-03-28T01:30:00Z, or a local time such as \
    2027-03-28T02:30 together with an IANA zone such as Europe/Paris";

/// A rejected sender time. Each message names the value and the accepted forms.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum TimeInputError {
    #[error("invalid time {text:?} ({reason}), {}", ACCEPTED_FORMS)]
    Malformed { text: String, reason: String },

    #[error(
        "local time {text:?} has no offset and no zone, so add an IANA zone such as Europe/Paris or an offset such as +01:00"
    )]
    MissingZone { text: String },

    #[error(
        "unknown time zone {zone:?}, expected an IANA zone name such as Europe/Paris, America/New_York or UTC"
    )]
    UnknownZone { zone: String },

    #[error("year {year} in {text:?} is out of range, expected a year from {} to {}", ACCEPTED_YEARS.start(), ACCEPTED_YEARS.end())]
    YearOutOfRange { text: String, year: i16 },

    #[error(
        "offset {offset} in {text:?} does not match {zone}, which is at {zone_offset} at that instant, so correct the offset or the zone"
    )]
    OffsetMismatch {
        text: String,
        offset: String,
        zone: String,
        zone_offset: String,
    },

    /// The local time falls in a gap of the zone, usually the spring-forward change.
    #[error("local time {local} does not exist in {zone} because the clocks skip it at a daylight-saving change, so enter {} or {}, or a time outside the gap", rfc3339_local(.before), rfc3339_local(.after))]
    SkippedLocalTime {
        local: String,
        zone: String,
        before: ZonedTime,
        after: ZonedTime,
    },
}

/// Choice that [`resolve_sender_time`] made between candidate instants.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Resolution {
    /// The text carried an offset, or the local time occurs once in its zone.
    Exact,
    /// The local time occurs twice in its zone, and the earlier instant was chosen.
    /// `later` is the second occurrence, which the sender can enter with its offset.
    EarlierOfFold { later: ZonedTime },
}

/// A parsed sender time and how its instant was chosen.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ResolvedTime {
    pub time: ZonedTime,
    pub resolution: Resolution,
}

/// Returns true when `text` carries an offset of 24 hours or more. RFC 3339 offsets run
/// to 23:59, but jiff reads up to 25:59:59.
pub fn offset_out_of_range(text: &str) -> bool {
    Pieces::parse(text)
        .ok()
        .and_then(|pieces| pieces.offset())
        .is_some_and(|offset| offset.to_numeric_offset().seconds().unsigned_abs() >= 24 * 3600)
}

/// Parses a sender time into a UTC instant and a zone name, as
/// [`resolve_sender_time`] does, dropping the [`Resolution`].
///
/// # Errors
///
/// As [`resolve_sender_time`].
pub fn parse_sender_time(text: &str, zone: Option<&str>) -> Result<ZonedTime, TimeInputError> {
    resolve_sender_time(text, zone).map(|resolved| resolved.time)
}

/// Parses a sender time into a UTC instant and a zone name, and reports how a
/// local time in a fold was resolved.
///
/// With an offset in `text`, the zone is `zone` if given, `UTC` for `Z` or `-00:00`,
/// and otherwise the offset itself such as `+05:30`. A numeric offset given with a
/// zone must equal that zone's offset at the instant. `Z` and `-00:00` state a UTC
/// instant without a local offset (RFC 9557), so they combine with any zone.
/// Without an offset, `zone` is required and the daylight-saving rules of the
/// module documentation apply. Digits finer than a microsecond are truncated.
///
/// # Errors
///
/// - [`TimeInputError::Malformed`] for text that is not a date with a time of day,
///   or that carries a bracketed zone annotation such as `[Europe/Paris]`.
/// - [`TimeInputError::UnknownZone`] for a zone missing from the time zone database.
/// - [`TimeInputError::YearOutOfRange`] for a year outside 1970 to 9998.
/// - [`TimeInputError::MissingZone`] for a local time without a zone.
/// - [`TimeInputError::OffsetMismatch`] for a numeric offset the zone does not use
///   at that instant.
/// - [`TimeInputError::SkippedLocalTime`] for a local time in a gap of the zone.
pub fn resolve_sender_time(text: &str, zone: Option<&str>) -> Result<ResolvedTime, TimeInputError> {
    let pieces = Pieces::parse(text).map_err(|err| malformed(text, err.to_string()))?;
    if pieces.time_zone_annotation().is_some() {
        return Err(malformed(
            text,
            "bracketed zone annotations are not accepted, pass the zone separately".into(),
        ));
    }
    let Some(time_of_day) = pieces.time() else {
        return Err(malformed(text, "the time of day is missing".into()));
    };
    if offset_out_of_range(text) {
        return Err(malformed(
            text,
            "the offset is 24 hours or more; give one from -23:59 to +23:59".into(),
        ));
    }
    let local = pieces.date().to_datetime(time_of_day);
    if !ACCEPTED_YEARS.contains(&local.year()) {
        return Err(year_out_of_range(text, local));
    }

    let named_zone = zone.map(lookup_zone).transpose()?;
    match (pieces.offset(), named_zone) {
        (Some(offset), named_zone) => resolve_with_offset(text, local, offset, named_zone),
        (None, Some((tz, name))) => resolve_in_zone(text, local, &tz, name),
        (None, None) => Err(TimeInputError::MissingZone {
            text: text.to_owned(),
        }),
    }
}

/// Renders a time in its zone with the offset and zone name, such as
/// `2027-10-31 02:30 CEST (+02:00, Europe/Paris)`, for e-mails and pages.
///
/// Seconds appear only when they are not zero. A numeric abbreviation from the time
/// zone database (`+11` for Australia/Lord_Howe) is left out because the offset
/// follows. A fixed-offset zone renders as `2027-03-28 08:00 (+05:30)`. A zone name
/// that this build's time zone database lacks renders the time in UTC, followed by
/// a note that the zone was not found.
pub fn format_for_sender(time: &ZonedTime) -> String {
    let micros = time.instant.as_micros();
    let Ok(instant) = Timestamp::from_microsecond(micros) else {
        return format!(
            "{micros} microseconds after 1970-01-01 00:00 UTC ({})",
            time.zone
        );
    };

    let Some(tz) = display_zone(&time.zone) else {
        let clock = clock_text(&instant.to_zoned_datetime(TimeZone::UTC));
        return format!(
            "{clock} UTC (zone {} not found in the time zone database)",
            time.zone
        );
    };
    render(instant, &tz, &time.zone)
}

fn resolve_with_offset(
    text: &str,
    local: DateTime,
    offset: PiecesOffset,
    named_zone: Option<(TimeZone, String)>,
) -> Result<ResolvedTime, TimeInputError> {
    let numeric = offset.to_numeric_offset();
    let instant = numeric
        .to_timestamp(local)
        .map_err(|_| year_out_of_range(text, local))?;

    // RFC 9557 gives `-00:00` the meaning of `Z`: a UTC instant, local offset unknown.
    let utc_without_local_offset = match offset {
        PiecesOffset::Numeric(numeric_offset) => {
            numeric_offset.is_negative() && numeric_offset.offset() == Offset::UTC
        }
        _ => true,
    };

    let zone = match named_zone {
        Some((tz, name)) => {
            let zone_offset = tz.to_offset(instant);
            if !utc_without_local_offset && zone_offset != numeric {
                return Err(TimeInputError::OffsetMismatch {
                    text: text.to_owned(),
                    offset: offset_text(numeric),
                    zone: name,
                    zone_offset: offset_text(zone_offset),
                });
            }
            name
        }
        None if utc_without_local_offset => "UTC".to_owned(),
        None => offset_text(numeric),
    };
    Ok(ResolvedTime {
        time: zoned_time(instant, zone),
        resolution: Resolution::Exact,
    })
}

fn resolve_in_zone(
    text: &str,
    local: DateTime,
    tz: &TimeZone,
    name: String,
) -> Result<ResolvedTime, TimeInputError> {
    let ambiguous = tz.to_ambiguous_timestamp(local);
    let out_of_range = |_| year_out_of_range(text, local);
    match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { .. } => {
            let instant = ambiguous.unambiguous().map_err(out_of_range)?;
            Ok(ResolvedTime {
                time: zoned_time(instant, name),
                resolution: Resolution::Exact,
            })
        }
        AmbiguousOffset::Fold { .. } => {
            let earlier = ambiguous.earlier().map_err(out_of_range)?;
            let later = ambiguous.later().map_err(out_of_range)?;
            Ok(ResolvedTime {
                time: zoned_time(earlier, name.clone()),
                resolution: Resolution::EarlierOfFold {
                    later: zoned_time(later, name),
                },
            })
        }
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the offset after the gap, the local time lands before the
            // transition, so the next transition is the one that skips it.
            let before_gap = after.to_timestamp(local).map_err(out_of_range)?;
            let transition = tz
                .following(before_gap)
                .next()
                .map(|transition| transition.timestamp())
                .ok_or_else(|| year_out_of_range(text, local))?;
            let last_second = transition
                .checked_sub(SignedDuration::from_secs(1))
                .map_err(out_of_range)?;
            Err(TimeInputError::SkippedLocalTime {
                local: local.to_string(),
                zone: name.clone(),
                before: zoned_time(last_second, name.clone()),
                after: zoned_time(transition, name),
            })
        }
    }
}

/// Looks up an IANA zone and returns it with its name as the database spells it.
pub fn lookup_zone(name: &str) -> Result<(TimeZone, String), TimeInputError> {
    // These files of the database are no zones: `localtime` is the server's own
    // setting, and `posixrules` and `Factory` are placeholders.
    if matches!(name, "localtime" | "posixrules" | "Factory") {
        return Err(TimeInputError::UnknownZone {
            zone: name.to_owned(),
        });
    }
    let tz = TimeZone::get(name).map_err(|_| TimeInputError::UnknownZone {
        zone: name.to_owned(),
    })?;
    let canonical = tz.iana_name().unwrap_or(name).to_owned();
    Ok((tz, canonical))
}

/// Returns the zone of a stored [`ZonedTime`]: a fixed offset such as `+05:30`,
/// or an IANA name.
fn display_zone(zone: &str) -> Option<TimeZone> {
    if zone.starts_with(['+', '-']) {
        let parsed = jiff::fmt::strtime::parse("%:z", zone).ok()?;
        return parsed.offset().map(TimeZone::fixed);
    }
    TimeZone::get(zone).ok()
}

fn render(instant: Timestamp, tz: &TimeZone, zone: &str) -> String {
    let zoned = instant.to_zoned_datetime(tz.clone());
    let clock = clock_text(&zoned);
    let offset = offset_text(zoned.offset());

    if zone == offset {
        return format!("{clock} ({offset})");
    }
    let info = tz.to_offset_info(instant);
    let abbreviation = info.abbreviation();
    if abbreviation.starts_with(['+', '-']) {
        format!("{clock} ({offset}, {zone})")
    } else {
        format!("{clock} {abbreviation} ({offset}, {zone})")
    }
}

/// Formats the local date and clock, with seconds only when they are not zero.
fn clock_text(zoned: &ZonedDateTime) -> String {
    let format = if zoned.second() == 0 {
        "%Y-%m-%d %H:%M"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    zoned.strftime(format).to_string()
}

/// Renders a time as RFC 3339 local time with offset, a form a sender can enter.
fn rfc3339_local(time: &ZonedTime) -> String {
    match (
        Timestamp::from_microsecond(time.instant.as_micros()),
        display_zone(&time.zone),
    ) {
        (Ok(instant), Some(tz)) => instant
            .to_zoned_datetime(tz)
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        _ => format_for_sender(time),
    }
}

/// Formats an offset as `+HH:MM`, or `+HH:MM:SS` when it has seconds.
fn offset_text(offset: Offset) -> String {
    Timestamp::UNIX_EPOCH
        .to_zoned_datetime(TimeZone::fixed(offset))
        .strftime("%:z")
        .to_string()
}

fn zoned_time(instant: Timestamp, zone: String) -> ZonedTime {
    let instant = consign_schemas::Timestamp::from_micros(instant.as_microsecond());
    ZonedTime { instant, zone }
}

fn malformed(text: &str, reason: String) -> TimeInputError {
    TimeInputError::Malformed {
        text: text.to_owned(),
        reason,
    }
}

fn year_out_of_range(text: &str, local: DateTime) -> TimeInputError {
    TimeInputError::YearOutOfRange {
        text: text.to_owned(),
        year: local.year(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microseconds of a UTC literal written by hand in the test.
    fn utc_micros(literal: &str) -> i64 {
        let instant: Timestamp = literal.parse().expect("test literal is a UTC timestamp");
        instant.as_microsecond()
    }

    /// Splits a case row `TEXT ZONE ...` into the text and the zone, `-` for none.
    fn text_and_zone(row: &str) -> (&str, Option<&str>) {
        let mut words = row.split_whitespace();
        let text = words.next().expect("row has a text");
        let zone = words.next().expect("row has a zone");
        (text, (zone != "-").then_some(zone))
    }

    fn parse_ok(text: &str, zone: Option<&str>) -> ResolvedTime {
        resolve_sender_time(text, zone)
            .unwrap_or_else(|err| panic!("{text:?} in {zone:?} was rejected: {err}"))
    }

    fn parse_err(text: &str, zone: Option<&str>) -> TimeInputError {
        match resolve_sender_time(text, zone) {
            Ok(resolved) => panic!("{text:?} in {zone:?} was accepted as {resolved:?}"),
            Err(err) => err,
        }
    }

    /// Checks rows of `TEXT ZONE STORED_ZONE UTC`, where UTC is written by hand from
    /// the zone's known offset.
    fn check_exact(rows: &[&str]) {
        for row in rows {
            let (text, zone) = text_and_zone(row);
            let words: Vec<&str> = row.split_whitespace().collect();
            let resolved = parse_ok(text, zone);
            assert_eq!(
                resolved.time.instant.as_micros(),
                utc_micros(words[3]),
                "{row}"
            );
            assert_eq!(resolved.time.zone, words[2], "{row}");
            assert_eq!(resolved.resolution, Resolution::Exact, "{row}");
        }
    }

    #[test]
    fn local_times_in_several_zones() {
        check_exact(&[
            "2027-07-14T09:00 Europe/Paris Europe/Paris 2027-07-14T07:00:00Z",
            "2027-01-15T09:00 Europe/Paris Europe/Paris 2027-01-15T08:00:00Z",
            "2027-01-15T09:00 America/New_York America/New_York 2027-01-15T14:00:00Z",
            "2027-07-01T09:00 America/New_York America/New_York 2027-07-01T13:00:00Z",
            "2027-03-28T02:30 Asia/Tokyo Asia/Tokyo 2027-03-27T17:30:00Z",
            "2027-01-15T12:00 Australia/Lord_Howe Australia/Lord_Howe 2027-01-15T01:00:00Z",
            "2027-07-15T12:00 Australia/Lord_Howe Australia/Lord_Howe 2027-07-15T01:30:00Z",
            "2027-03-28T02:30 UTC UTC 2027-03-28T02:30:00Z",
            "2027-03-28T02:30:15.250 UTC UTC 2027-03-28T02:30:15.25Z",
        ]);
    }

    #[test]
    fn zulu_and_numeric_offsets() {
        check_exact(&[
            "2027-03-28T01:30:00Z - UTC 2027-03-28T01:30:00Z",
            "2027-03-28T01:30:00z - UTC 2027-03-28T01:30:00Z",
            "2027-03-28T01:30:00-00:00 - UTC 2027-03-28T01:30:00Z",
            "2027-03-28T01:30:00+00:00 - +00:00 2027-03-28T01:30:00Z",
            "2027-03-28T08:00+05:30 - +05:30 2027-03-28T02:30:00Z",
            "2027-03-28T02:30:00-04:00 - -04:00 2027-03-28T06:30:00Z",
            "2027-07-14T07:00:00Z Europe/Paris Europe/Paris 2027-07-14T07:00:00Z",
            "2027-07-14T03:00-04:00 America/New_York America/New_York 2027-07-14T07:00:00Z",
            "2027-07-14T16:00+09:00 Asia/Tokyo Asia/Tokyo 2027-07-14T07:00:00Z",
            // An offset picks either instant of a fold, so no rule applies.
            "2027-10-31T02:30+01:00 Europe/Paris Europe/Paris 2027-10-31T01:30:00Z",
            "2027-10-31T02:30+02:00 Europe/Paris Europe/Paris 2027-10-31T00:30:00Z",
        ]);
    }

    #[test]
    fn gap_rejected_with_neighbours() {
        let err = parse_err("2027-03-28T02:30", Some("Europe/Paris"));
        let TimeInputError::SkippedLocalTime {
            local,
            zone,
            before,
            after,
        } = &err
        else {
            panic!("expected SkippedLocalTime, got {err:?}");
        };
        assert_eq!(local, "2027-03-28T02:30:00");
        assert_eq!(zone, "Europe/Paris");
        assert_eq!(
            before.instant.as_micros(),
            utc_micros("2027-03-28T00:59:59Z")
        );
        assert_eq!(
            after.instant.as_micros(),
            utc_micros("2027-03-28T01:00:00Z")
        );

        let message = err.to_string();
        assert!(message.contains("2027-03-28T02:30:00"), "{message}");
        assert!(message.contains("Europe/Paris"), "{message}");
        assert!(message.contains("2027-03-28T01:59:59+01:00"), "{message}");
        assert!(message.contains("2027-03-28T03:00:00+02:00"), "{message}");
    }

    #[test]
    fn gap_of_thirty_minutes_rejected() {
        // Lord Howe moves from +10:30 to +11:00 at 02:00 local on 2027-10-03.
        let message = parse_err("2027-10-03T02:15", Some("Australia/Lord_Howe")).to_string();
        assert!(message.contains("2027-10-03T01:59:59+10:30"), "{message}");
        assert!(message.contains("2027-10-03T02:30:00+11:00"), "{message}");
    }

    #[test]
    fn fold_resolves_to_earlier_instant() {
        let rows = [
            // TEXT ZONE EARLIER_UTC LATER_UTC
            "2027-10-31T02:30 Europe/Paris 2027-10-31T00:30:00Z 2027-10-31T01:30:00Z",
            "2027-11-07T01:30 America/New_York 2027-11-07T05:30:00Z 2027-11-07T06:30:00Z",
            // Lord Howe repeats 01:30 to 02:00 local, at +11:00 and then at +10:30.
            "2027-04-04T01:45 Australia/Lord_Howe 2027-04-03T14:45:00Z 2027-04-03T15:15:00Z",
        ];
        for row in rows {
            let (text, zone) = text_and_zone(row);
            let words: Vec<&str> = row.split_whitespace().collect();
            let resolved = parse_ok(text, zone);
            assert_eq!(
                resolved.time.instant.as_micros(),
                utc_micros(words[2]),
                "{row}"
            );
            assert_eq!(resolved.time.zone, words[1], "{row}");
            let Resolution::EarlierOfFold { later } = &resolved.resolution else {
                panic!(
                    "{row}: expected EarlierOfFold, got {:?}",
                    resolved.resolution
                );
            };
            assert_eq!(later.instant.as_micros(), utc_micros(words[3]), "{row}");
            assert_eq!(later.zone, words[1], "{row}");
        }
    }

    #[test]
    fn offset_zone_mismatch_rejected() {
        let err = parse_err("2027-07-14T09:00+01:00", Some("Europe/Paris"));
        let expected = TimeInputError::OffsetMismatch {
            text: "2027-07-14T09:00+01:00".into(),
            offset: "+01:00".into(),
            zone: "Europe/Paris".into(),
            zone_offset: "+02:00".into(),
        };
        assert_eq!(err, expected);
        let message = err.to_string();
        assert!(message.contains("offset +01:00"), "{message}");
        assert!(message.contains("is at +02:00"), "{message}");
    }

    #[test]
    fn unknown_zone_rejected() {
        let err = parse_err("2027-03-28T02:30", Some("Europe/Pariss"));
        assert_eq!(
            err,
            TimeInputError::UnknownZone {
                zone: "Europe/Pariss".into()
            }
        );
        assert!(err.to_string().contains("\"Europe/Pariss\""), "{err}");
        assert!(err.to_string().contains("IANA zone name"), "{err}");

        let err = parse_err("2027-03-28T02:30", Some("+01:00"));
        assert_eq!(
            err,
            TimeInputError::UnknownZone {
                zone: "+01:00".into()
            }
        );
    }

    #[test]
    fn local_time_without_zone_rejected() {
        let err = parse_err("2027-03-28T02:30", None);
        assert_eq!(
            err,
            TimeInputError::MissingZone {
                text: "2027-03-28T02:30".into()
            }
        );
        assert!(err.to_string().contains("add an IANA zone"), "{err}");
    }

    #[test]
    fn malformed_input_rejected() {
        let inputs = [
            "",
            "tomorrow",
            "28/03/2027 02:30",
            "2027-13-01T00:00",
            "2027-02-30T00:00",
            "2027-03-28T25:00",
            "2027-03-28",
            "2027-03-28T02:30[Europe/Paris]",
        ];
        for text in inputs {
            let err = parse_err(text, Some("Europe/Paris"));
            assert!(
                matches!(err, TimeInputError::Malformed { .. }),
                "{text:?}: {err:?}"
            );
            let message = err.to_string();
            assert!(message.contains(&format!("{text:?}")), "{message}");
            assert!(message.contains("2027-03-28T02:30:00+01:00"), "{message}");
        }
    }

    #[test]
    fn year_out_of_range_rejected() {
        for (row, year) in [
            ("1969-12-31T23:00Z -", 1969),
            ("0001-01-01T00:00 UTC", 1),
            ("1900-06-01T12:00 Europe/Paris", 1900),
            ("9999-12-31T00:00:00Z -", 9999),
            ("9999-01-01T00:00 UTC", 9999),
        ] {
            let (text, zone) = text_and_zone(row);
            let err = parse_err(text, zone);
            assert_eq!(
                err,
                TimeInputError::YearOutOfRange {
                    text: text.into(),
                    year
                }
            );
            assert!(err.to_string().contains("from 1970 to 9998"), "{err}");
        }
    }

    #[test]
    fn format_for_sender_round_trip() {
        let rows = [
            "2027-10-31T02:30 Europe/Paris => 2027-10-31 02:30 CEST (+02:00, Europe/Paris)",
            "2027-10-31T02:30+01:00 Europe/Paris => 2027-10-31 02:30 CET (+01:00, Europe/Paris)",
            "2027-01-15T09:00 America/New_York => 2027-01-15 09:00 EST (-05:00, America/New_York)",
            "2027-03-28T02:30 Asia/Tokyo => 2027-03-28 02:30 JST (+09:00, Asia/Tokyo)",
            "2027-07-15T12:00 Australia/Lord_Howe => 2027-07-15 12:00 (+10:30, Australia/Lord_Howe)",
            "2027-03-28T01:30:45Z - => 2027-03-28 01:30:45 UTC (+00:00, UTC)",
            "2027-03-28T08:00+05:30 - => 2027-03-28 08:00 (+05:30)",
        ];
        for row in rows {
            let (input, expected) = row.split_once(" => ").expect("row has =>");
            let (text, zone) = text_and_zone(input);
            let time = parse_ok(text, zone).time;
            let rendered = format_for_sender(&time);
            assert_eq!(rendered, expected, "{row}");

            // The rendered date, clock and offset, typed back, name the same instant.
            let mut words = rendered.split_whitespace();
            let date = words.next().expect("rendering has a date");
            let clock = words.next().expect("rendering has a clock");
            let (_, after_parenthesis) = rendered.split_once('(').expect("rendering has an offset");
            let offset = after_parenthesis.split([',', ')']).next().expect("offset");
            let typed = format!("{date}T{clock}{offset}");
            let zone_again = (time.zone != offset).then_some(time.zone.as_str());
            assert_eq!(
                parse_sender_time(&typed, zone_again),
                Ok(time.clone()),
                "{typed}"
            );
        }
    }

    #[test]
    fn format_for_sender_with_unknown_zone() {
        let instant = consign_schemas::Timestamp::from_micros(utc_micros("2027-03-28T01:30:00Z"));
        let time = ZonedTime {
            instant,
            zone: "Mars/Olympus_Mons".into(),
        };
        let expected =
            "2027-03-28 01:30 UTC (zone Mars/Olympus_Mons not found in the time zone database)";
        assert_eq!(format_for_sender(&time), expected);
    }
}
