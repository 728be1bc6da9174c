//! Byte range requests (RFC 9110 §14): the `Range` and `If-Range` request headers.
//!
//! Only a single range is served as `206 Partial Content`. A request for several ranges
//! gets the whole document with `200 OK`, which RFC 9110 §14.2 allows because a server
//! may ignore the `Range` header, so no `multipart/byteranges` body is ever built.

use axum::http::header::{IF_RANGE, RANGE};
use axum::http::{HeaderMap, HeaderValue};

/// A satisfiable byte range of a representation: `len` bytes from offset `start`,
/// with `len >= 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ByteRange {
    pub(crate) start: u64,
    pub(crate) len: u64,
}

impl ByteRange {
    /// Offset of the last byte, as written in `Content-Range`.
    pub(crate) fn last(&self) -> u64 {
        self.start + self.len - 1
    }

    /// Builds the `Content-Range` value of a 206 response, `bytes START-LAST/SIZE`.
    pub(crate) fn content_range(&self, size: u64) -> HeaderValue {
        let value = format!("bytes {}-{}/{size}", self.start, self.last());
        HeaderValue::from_str(&value).expect("digits, a space, '-' and '/' are valid")
    }
}

/// Response to a request's `Range` header: the whole representation, one part, or 416.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeDecision {
    /// No usable range: send the whole representation with 200. This covers a missing,
    /// malformed or multi-range header, a unit other than `bytes`, and an `If-Range`
    /// validator that does not match.
    Full,
    /// Send this part with 206 and [`ByteRange::content_range`].
    Partial(ByteRange),
    /// No range overlaps the representation: send 416 with
    /// [`unsatisfied_content_range`].
    Unsatisfiable,
}

/// Builds the `Content-Range` value of a 416 response, `bytes */SIZE`.
pub(crate) fn unsatisfied_content_range(size: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("bytes */{size}")).expect("digits are valid")
}

/// Decides how to answer a GET with `headers` for a representation of `size` bytes
/// whose current strong entity tag is `etag` (with quotes, for example `"abc"`).
///
/// The `Range` header counts only when `If-Range` is absent or matches `etag` (see
/// [`if_range_matches`]). Several `Range` header fields count as several ranges.
pub(crate) fn evaluate(headers: &HeaderMap, size: u64, etag: &str) -> RangeDecision {
    let mut ranges = headers.get_all(RANGE).iter();
    let Some(range) = ranges.next() else {
        return RangeDecision::Full;
    };
    if ranges.next().is_some() {
        return RangeDecision::Full;
    }
    if !if_range_matches(headers.get(IF_RANGE), etag) {
        return RangeDecision::Full;
    }
    match range.to_str() {
        Ok(text) => parse_range(text, size),
        Err(_) => RangeDecision::Full,
    }
}

/// Returns whether a request's `If-Range` header allows its `Range` header to be used
/// for a representation whose current entity tag is `current_etag`.
///
/// A missing header allows it. Otherwise the header must be a strong entity tag that
/// is byte for byte equal to `current_etag`, which must be strong as well (RFC 9110
/// §13.1.5 requires the strong comparison). A weak tag or an HTTP-date never matches,
/// because this server sends no `Last-Modified` to compare a date with, so the client
/// gets the whole, current representation instead of a part of a changed one.
pub(crate) fn if_range_matches(if_range: Option<&HeaderValue>, current_etag: &str) -> bool {
    let Some(if_range) = if_range else {
        return true;
    };
    let Ok(validator) = if_range.to_str() else {
        return false;
    };
    let validator = validator.trim();
    is_strong_etag(validator) && is_strong_etag(current_etag) && validator == current_etag
}

/// Returns whether `tag` has the syntax of a strong entity tag: `"` etagc* `"`.
fn is_strong_etag(tag: &str) -> bool {
    let Some(inner) = tag
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return false;
    };
    inner
        .bytes()
        .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
}

/// Parses a `Range` header value against a representation of `size` bytes.
///
/// The unit `bytes` is matched case-insensitively and whitespace around list elements
/// is skipped (RFC 9110 §5.6.1). Numbers too large for `u64` are read as `u64::MAX`, so
/// such a start is unsatisfiable and such an end or suffix length covers the rest.
pub(crate) fn parse_range(header: &str, size: u64) -> RangeDecision {
    let Some((unit, set)) = header.split_once('=') else {
        return RangeDecision::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeDecision::Full;
    }

    let mut specs = Vec::new();
    for element in set.split(',') {
        let element = element.trim_matches([' ', '\t']);
        if element.is_empty() {
            // Empty list elements are allowed and carry nothing (RFC 9110 §5.6.1).
            continue;
        }
        match parse_spec(element) {
            Some(spec) => specs.push(spec),
            None => return RangeDecision::Full,
        }
    }

    match specs.as_slice() {
        [] => RangeDecision::Full,
        [spec] => resolve(*spec, size),
        several => {
            // The whole body satisfies a multi-range request, except when no range
            // overlaps the representation, because that requires 416 (RFC 9110 §15.5.17).
            let any_satisfiable = several
                .iter()
                .any(|spec| resolve(*spec, size) != RangeDecision::Unsatisfiable);
            if any_satisfiable {
                RangeDecision::Full
            } else {
                RangeDecision::Unsatisfiable
            }
        }
    }
}

/// One `range-spec` as written, before it is compared with the size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RangeSpec {
    /// `first-last` or, with `last == None`, `first-`.
    FromTo { first: u64, last: Option<u64> },
    /// `-length`: the last `length` bytes.
    Suffix { length: u64 },
}

/// Parses `first-last`, `first-` or `-length`. An `int-range` whose last position is
/// below its first is invalid (RFC 9110 §14.1.1), so it gives `None` as well.
fn parse_spec(element: &str) -> Option<RangeSpec> {
    let (first, last) = element.split_once('-')?;
    if first.is_empty() {
        let length = parse_digits(last)?;
        return Some(RangeSpec::Suffix { length });
    }
    let first = parse_digits(first)?;
    if last.is_empty() {
        return Some(RangeSpec::FromTo { first, last: None });
    }
    let last = parse_digits(last)?;
    if last < first {
        return None;
    }
    Some(RangeSpec::FromTo {
        first,
        last: Some(last),
    })
}

/// Parses 1*DIGIT, saturating at `u64::MAX`. Anything else, such as a sign or a space,
/// gives `None`.
fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value = text.bytes().fold(0u64, |value, digit| {
        value
            .saturating_mul(10)
            .saturating_add(u64::from(digit - b'0'))
    });
    Some(value)
}

/// Compares one parsed range with the size (RFC 9110 §14.1.1 and §14.1.2).
fn resolve(spec: RangeSpec, size: u64) -> RangeDecision {
    match spec {
        RangeSpec::FromTo { first, last } => {
            if first >= size {
                return RangeDecision::Unsatisfiable;
            }
            let last = last.map_or(size - 1, |last| last.min(size - 1));
            RangeDecision::Partial(ByteRange {
                start: first,
                len: last - first + 1,
            })
        }
        RangeSpec::Suffix { length: 0 } => RangeDecision::Unsatisfiable,
        // A suffix range of an empty representation is satisfiable by definition but
        // selects no byte, and `Content-Range` cannot express an empty range, so the
        // (empty) whole is sent.
        RangeSpec::Suffix { .. } if size == 0 => RangeDecision::Full,
        RangeSpec::Suffix { length } => {
            let len = length.min(size);
            RangeDecision::Partial(ByteRange {
                start: size - len,
                len,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn partial(start: u64, len: u64) -> RangeDecision {
        RangeDecision::Partial(ByteRange { start, len })
    }

    #[test]
    fn single_ranges() {
        let cases = [
            ("bytes=0-0", partial(0, 1)),
            ("bytes=0-499", partial(0, 500)),
            ("bytes=500-999", partial(500, 500)),
            ("bytes=500-", partial(500, 500)),
            ("bytes=-500", partial(500, 500)),
            ("bytes=-1", partial(999, 1)),
            ("bytes=999-999", partial(999, 1)),
            ("bytes=0-", partial(0, 1000)),
        ];
        for (header, expected) in cases {
            assert_eq!(parse_range(header, 1000), expected, "{header}");
        }
    }

    #[test]
    fn ranges_past_end_are_clamped() {
        assert_eq!(parse_range("bytes=900-5000", 1000), partial(900, 100));
        assert_eq!(parse_range("bytes=-5000", 1000), partial(0, 1000));
        assert_eq!(
            parse_range("bytes=0-99999999999999999999999", 1000),
            partial(0, 1000)
        );
        assert_eq!(
            parse_range("bytes=-99999999999999999999999", 1000),
            partial(0, 1000)
        );
    }

    #[test]
    fn unsatisfiable_ranges() {
        for header in [
            "bytes=1000-",
            "bytes=1000-2000",
            "bytes=-0",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(
                parse_range(header, 1000),
                RangeDecision::Unsatisfiable,
                "{header}"
            );
        }
        assert_eq!(parse_range("bytes=0-", 0), RangeDecision::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), RangeDecision::Unsatisfiable);
    }

    #[test]
    fn suffix_of_empty_is_whole() {
        assert_eq!(parse_range("bytes=-5", 0), RangeDecision::Full);
    }

    #[test]
    fn malformed_headers_are_ignored() {
        for header in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "bytes=abc",
            "bytes=5",
            "bytes=-",
            "bytes=--5",
            "bytes=5-3",
            "bytes=+5-10",
            "bytes=5 -10",
            "bytes=0x10-20",
            "bytes=1-2-3",
            "items=0-5",
            "bytes=0-5,abc",
        ] {
            assert_eq!(parse_range(header, 1000), RangeDecision::Full, "{header:?}");
        }
    }

    #[test]
    fn unit_and_whitespace_tolerance() {
        assert_eq!(parse_range("Bytes=0-9", 100), partial(0, 10));
        assert_eq!(parse_range("BYTES=0-9", 100), partial(0, 10));
        assert_eq!(parse_range("bytes= 0-9 ", 100), partial(0, 10));
        assert_eq!(parse_range("bytes=0-9, ", 100), partial(0, 10));
        assert_eq!(parse_range("bytes=, ,0-9", 100), partial(0, 10));
    }

    #[test]
    fn multiple_ranges_send_whole() {
        assert_eq!(parse_range("bytes=0-9,20-29", 100), RangeDecision::Full);
        assert_eq!(parse_range("bytes=0-9, -5", 100), RangeDecision::Full);
        assert_eq!(parse_range("bytes=200-300,0-5", 100), RangeDecision::Full);
    }

    #[test]
    fn multiple_unsatisfiable_ranges() {
        assert_eq!(
            parse_range("bytes=200-300,400-", 100),
            RangeDecision::Unsatisfiable
        );
    }

    #[test]
    fn content_range_values() {
        let range = ByteRange {
            start: 500,
            len: 500,
        };
        assert_eq!(range.last(), 999);
        assert_eq!(range.content_range(1000), "bytes 500-999/1000");
        assert_eq!(unsatisfied_content_range(1000), "bytes */1000");
    }

    #[test]
    fn if_range_strong_match_only() {
        let etag = "\"abc123\"";
        let header = |value: &'static str| HeaderValue::from_static(value);

        assert!(if_range_matches(None, etag));
        assert!(if_range_matches(Some(&header("\"abc123\"")), etag));
        assert!(if_range_matches(Some(&header(" \"abc123\" ")), etag));
        assert!(!if_range_matches(Some(&header("\"other\"")), etag));
        assert!(!if_range_matches(Some(&header("W/\"abc123\"")), etag));
        assert!(!if_range_matches(Some(&header("abc123")), etag));
        assert!(!if_range_matches(
            Some(&header("Wed, 21 Oct 2015 07:28:00 GMT")),
            etag
        ));
        assert!(!if_range_matches(
            Some(&header("\"abc123\"")),
            "W/\"abc123\""
        ));
    }

    #[test]
    fn evaluate_combines_headers() {
        let etag = "\"v1\"";
        let mut headers = HeaderMap::new();
        assert_eq!(evaluate(&headers, 100, etag), RangeDecision::Full);

        headers.insert(RANGE, HeaderValue::from_static("bytes=10-19"));
        assert_eq!(evaluate(&headers, 100, etag), partial(10, 10));

        headers.insert(IF_RANGE, HeaderValue::from_static("\"v1\""));
        assert_eq!(evaluate(&headers, 100, etag), partial(10, 10));

        headers.insert(IF_RANGE, HeaderValue::from_static("\"v0\""));
        assert_eq!(evaluate(&headers, 100, etag), RangeDecision::Full);

        headers.remove(IF_RANGE);
        headers.insert(RANGE, HeaderValue::from_static("bytes=100-"));
        assert_eq!(evaluate(&headers, 100, etag), RangeDecision::Unsatisfiable);
    }

    #[test]
    fn evaluate_several_range_fields() {
        let mut headers = HeaderMap::new();
        headers.append(RANGE, HeaderValue::from_static("bytes=0-1"));
        headers.append(RANGE, HeaderValue::from_static("bytes=5-6"));
        assert_eq!(evaluate(&headers, 100, "\"v1\""), RangeDecision::Full);
    }

    #[test]
    fn evaluate_non_ascii_range() {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_bytes(b"bytes=0-\xff").expect("obs-text is allowed");
        headers.insert(RANGE, value);
        assert_eq!(evaluate(&headers, 100, "\"v1\""), RangeDecision::Full);
    }

    /// Range-like strings: mostly digits, dashes and commas, sometimes noise.
    fn range_header() -> impl Strategy<Value = String> {
        let spec = prop_oneof![
            (any::<u64>(), any::<u64>()).prop_map(|(a, b)| format!("{a}-{b}")),
            (0u64..2000, 0u64..2000).prop_map(|(a, b)| format!("{a}-{b}")),
            (0u64..2000).prop_map(|a| format!("{a}-")),
            (0u64..2000).prop_map(|n| format!("-{n}")),
            "[0-9 ,-]{0,12}",
        ];
        prop::collection::vec(spec, 0..4).prop_map(|specs| format!("bytes={}", specs.join(",")))
    }

    proptest! {
        #[test]
        fn parsed_range_lies_within_size(header in range_header(), size in 0u64..5000) {
            if let RangeDecision::Partial(range) = parse_range(&header, size) {
                prop_assert!(range.len >= 1);
                prop_assert!(range.start < size);
                prop_assert!(range.last() < size);
                prop_assert!(range.start + range.len <= size);
            }
        }

        #[test]
        fn huge_sizes_stay_in_bounds(a in any::<u64>(), b in any::<u64>(), size in any::<u64>()) {
            for header in [format!("bytes={a}-{b}"), format!("bytes={a}-"), format!("bytes=-{b}")] {
                if let RangeDecision::Partial(range) = parse_range(&header, size) {
                    prop_assert!(range.len >= 1);
                    prop_assert!(range.last() < size);
                    prop_assert!(range.start.checked_add(range.len).is_some_and(|end| end <= size));
                }
            }
        }

        #[test]
        fn arbitrary_text_never_panics(header in ".{0,40}", size in any::<u64>()) {
            let _ = parse_range(&header, size);
        }

        #[test]
        fn explicit_range_is_exact(first in 0u64..1000, extra in 0u64..1000, size in 1u64..3000) {
            let last = first + extra;
            let decision = parse_range(&format!("bytes={first}-{last}"), size);
            if first >= size {
                prop_assert_eq!(decision, RangeDecision::Unsatisfiable);
            } else {
                let expected_last = last.min(size - 1);
                prop_assert_eq!(decision, partial(first, expected_last - first + 1));
            }
        }
    }
}
