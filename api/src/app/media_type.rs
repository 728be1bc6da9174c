//! Checks on the media type and transfer encoding a client sends with a document, and
//! the parameter parsing that the file name check in [`super::part_name`] shares. The
//! media type is stored as sent and returned as the download's Content-Type.

use super::error::ApiError;
use super::names::quoted;

/// Valid media type with a parameter, shown in error messages.
const MEDIA_TYPE_EXAMPLE: &str = "text/plain; charset=utf-8";

/// Checks a document's media type, defaulting to `application/octet-stream`.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `field` unless it has the form `type/subtype` in visible
/// ASCII without spaces, followed by `name=value` parameters as RFC 2045 section 5.1
/// defines them, each name at most once in any letter case.
pub fn check_media_type(field: &str, media_type: Option<&str>) -> Result<String, ApiError> {
    let Some(media_type) = media_type else {
        return Ok("application/octet-stream".to_owned());
    };
    let essence = media_type.split(';').next().unwrap_or("").trim();
    let valid = media_type.len() <= 200
        && media_type.bytes().all(|byte| (0x20..0x7f).contains(&byte))
        && essence.split_once('/').is_some_and(|(kind, subtype)| {
            let token = |part: &str| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|byte| byte.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&byte))
            };
            token(kind) && token(subtype)
        });
    if !valid {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field} {} is not a media type such as application/pdf",
                quoted(media_type)
            ),
        ));
    }
    let parameters: Vec<&str> = split_parameters(media_type).into_iter().skip(1).collect();
    let problem = parameters
        .iter()
        .copied()
        .find_map(parameter_problem)
        .or_else(|| {
            repeated_parameter(&parameters).map(|(first, second)| {
                format!(
                    "has {}, so a reader could take either value; send each parameter once, \
                     such as {MEDIA_TYPE_EXAMPLE}",
                    describe_repetition(first, second)
                )
            })
        });
    match problem {
        Some(problem) => Err(ApiError::invalid(
            field,
            format!("{field} {} {problem}", quoted(media_type)),
        )),
        None => Ok(media_type.to_owned()),
    }
}

/// Checks that a document part's Content-Transfer-Encoding, if any, leaves its bytes as
/// they are: `7bit`, `8bit` or `binary` in any letter case.
///
/// RFC 7578 section 4.7 deprecates the header in multipart/form-data. The server stores
/// the part's bytes as received, so a `base64` or `quoted-printable` part would reach
/// the recipient still encoded, with a hash of the encoded text.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `field` for any other encoding.
pub fn check_transfer_encoding(field: &str, encoding: Option<&[u8]>) -> Result<(), ApiError> {
    let Some(encoding) = encoding else {
        return Ok(());
    };
    let encoding = String::from_utf8_lossy(encoding);
    let identity = ["7bit", "8bit", "binary"]
        .iter()
        .any(|name| encoding.trim().eq_ignore_ascii_case(name));
    if identity {
        return Ok(());
    }
    Err(ApiError::invalid(
        field,
        format!(
            "{field}: the part's Content-Transfer-Encoding {} is not supported, because the \
             document would be stored still encoded; leave the header out and send the \
             document's bytes as they are (RFC 7578 section 4.7)",
            quoted(&encoding)
        ),
    ))
}

/// Splits a header value at each `;` outside a quoted string. The first piece is the
/// value before any parameter, and each later piece is one parameter as sent.
pub(super) fn split_parameters(value: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (index, byte) in value.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match byte {
            b'\\' if in_quotes => escaped = true,
            b'"' => in_quotes = !in_quotes,
            b';' if !in_quotes => {
                pieces.push(&value[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    pieces.push(&value[start..]);
    pieces
}

/// Describes what is wrong with one media type parameter, or returns `None` for
/// `name=value` with a token as the name and a token or a quoted string as the value.
///
/// This is the grammar of RFC 2045 section 5.1, which governs the Content-Type of a
/// MIME part, with spaces allowed around each `;`. RFC 9110 section 5.6.6
/// tolerates an empty parameter (`text/plain;`) in HTTP fields, but RFC 2045 does not,
/// so it is rejected.
fn parameter_problem(parameter: &str) -> Option<String> {
    let parameter = parameter.trim_matches(' ');
    if parameter.is_empty() {
        return Some(format!(
            "has an empty parameter after a semicolon; remove that semicolon, or write each \
             parameter as name=value, such as {MEDIA_TYPE_EXAMPLE}"
        ));
    }
    let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
    if name.is_empty() {
        return Some(format!(
            "has a parameter without a name ({}); write each parameter as name=value, such \
             as {MEDIA_TYPE_EXAMPLE}",
            quoted(parameter)
        ));
    }
    if !is_token(name) {
        return Some(format!(
            "has an invalid parameter name {}; a name has no spaces, quotes, backslashes or \
             any of ()<>@,;:/[]?=, and name=value has no space around the =, such as \
             {MEDIA_TYPE_EXAMPLE}",
            quoted(name)
        ));
    }
    if value.is_empty() {
        return Some(format!(
            "has the parameter {} without a value; write each parameter as name=value, such \
             as {MEDIA_TYPE_EXAMPLE}",
            quoted(name)
        ));
    }
    if !is_token(value) && !is_quoted_string(value) {
        return Some(format!(
            "has an invalid value for the parameter {}; put a value with spaces, quotes, \
             backslashes or any of ()<>@,;:/[]?= in double quotes, with a backslash before \
             each quote or backslash inside, such as text/plain; name=\"my file.txt\"",
            quoted(name)
        ));
    }
    None
}

/// Returns true for an RFC 2045 token: visible ASCII except the tspecials
/// `()<>@,;:\"/[]?=`.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&byte))
}

/// Returns true for a complete quoted string: text between double quotes in which each
/// `"` and `\` is preceded by a backslash.
fn is_quoted_string(text: &str) -> bool {
    let Some(inner) = text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return false;
    };
    // In a quoted pair, the backslash escapes the next character, whatever it is.
    let mut escaped = false;
    for byte in inner.bytes() {
        if escaped {
            escaped = false;
            continue;
        }
        match byte {
            b'\\' => escaped = true,
            b'"' => return false,
            _ => {}
        }
    }
    !escaped
}

/// Returns the name of a parameter as sent, without the surrounding spaces.
pub(super) fn parameter_name(parameter: &str) -> &str {
    parameter.split('=').next().unwrap_or("").trim()
}

/// Describes a parameter sent twice, such as `the parameter "charset" twice (as
/// "charset" and "CHARSET")`.
pub(super) fn describe_repetition(first: &str, second: &str) -> String {
    if first == second {
        format!("the parameter {} twice", quoted(first))
    } else {
        format!(
            "the parameter {} twice (as {} and {})",
            quoted(first),
            quoted(first),
            quoted(second)
        )
    }
}

/// Returns the first two spellings of the first parameter name that occurs twice in
/// `parameters`. Parameter names are compared without regard to ASCII letter case, as
/// MIME and HTTP compare them.
pub(super) fn repeated_parameter<'a>(parameters: &[&'a str]) -> Option<(&'a str, &'a str)> {
    parameters
        .iter()
        .enumerate()
        .find_map(|(index, parameter)| {
            let name = parameter_name(parameter);
            parameters[index + 1..]
                .iter()
                .map(|later| parameter_name(later))
                .find(|later| !name.is_empty() && later.eq_ignore_ascii_case(name))
                .map(|later| (name, later))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_encodings_checked() {
        assert!(check_transfer_encoding("t", None).is_ok());
        for identity in ["7bit", "8BIT", " binary "] {
            assert!(
                check_transfer_encoding("t", Some(identity.as_bytes())).is_ok(),
                "{identity}"
            );
        }
        for encoded in ["base64", "Quoted-Printable", "x-gzip"] {
            let error = check_transfer_encoding("documents[0]", Some(encoded.as_bytes()))
                .unwrap_err()
                .to_string();
            assert!(error.contains("documents[0]"), "{error}");
            assert!(error.contains(&format!("\"{encoded}\"")), "{error}");
            assert!(error.contains("leave the header out"), "{error}");
        }
    }

    #[test]
    fn media_types_are_checked() {
        assert_eq!(
            check_media_type("t", None).unwrap(),
            "application/octet-stream"
        );
        assert!(check_media_type("t", Some("application/pdf")).is_ok());
        assert!(check_media_type("t", Some("text/plain; charset=utf-8")).is_ok());
        assert!(check_media_type("t", Some("text/plain\r\nX: y")).is_err());
        assert!(check_media_type("t", Some("nonsense")).is_err());
    }

    #[test]
    fn media_type_parameters_checked() {
        let valid = [
            "text/plain;charset=utf-8",
            "text/plain; charset=\"utf-8\"",
            "text/plain; charset=utf-8 ; format=flowed",
            r#"text/plain; name="a;b \"c\" \\ d""#,
            "text/plain; name=\"\"",
        ];
        for media_type in valid {
            assert_eq!(check_media_type("t", Some(media_type)).unwrap(), media_type);
        }
        let invalid = [
            ("text/plain;", "empty parameter"),
            ("text/plain; ;charset=utf-8", "empty parameter"),
            (
                "text/plain; charset",
                r#"parameter "charset" without a value"#,
            ),
            (
                "text/plain; charset=",
                r#"parameter "charset" without a value"#,
            ),
            ("text/plain; =utf-8", r#"without a name ("=utf-8")"#),
            ("text/plain; a(b)=c", r#"invalid parameter name "a(b)""#),
            ("text/plain; charset=\"utf-8", "invalid value"),
            ("text/plain; charset=\"utf-8\\\"", "invalid value"),
            ("text/plain; charset=\"a\"b\"", "invalid value"),
            ("text/plain; name=a b", "invalid value"),
        ];
        for (media_type, problem) in invalid {
            let error = check_media_type("t", Some(media_type))
                .unwrap_err()
                .to_string();
            assert!(error.contains(problem), "{media_type}: {error}");
            assert!(
                error.contains(MEDIA_TYPE_EXAMPLE) || error.contains("name=\"my file.txt\""),
                "{media_type}: no example in {error}"
            );
        }
    }

    #[test]
    fn repeated_media_type_parameters_rejected() {
        let cases = [
            (
                "text/plain; charset=a; charset=b",
                r#"the parameter "charset" twice,"#,
            ),
            (
                "text/plain; charset=a; CHARSET=b",
                r#"the parameter "charset" twice (as "charset" and "CHARSET")"#,
            ),
            (
                "text/plain; charset=a; format=flowed; Charset=\"a\"",
                r#"the parameter "charset" twice (as "charset" and "Charset")"#,
            ),
        ];
        for (media_type, problem) in cases {
            let error = check_media_type("documents[0].content_type", Some(media_type))
                .unwrap_err()
                .to_string();
            assert!(error.contains(problem), "{media_type}: {error}");
            assert!(error.contains(MEDIA_TYPE_EXAMPLE), "{media_type}: {error}");
        }
        let distinct = "text/plain; charset=utf-8; format=flowed";
        assert_eq!(check_media_type("t", Some(distinct)).unwrap(), distinct);
    }
}
