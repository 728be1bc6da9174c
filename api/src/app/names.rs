//! Checks on the file name and media type a client sends with a document. The name is
//! metadata only and never part of a path, but names that look like paths or carry
//! control characters are rejected so that no reader of the ledger is misled by them.
//! The media type is stored as sent and returned as the download's Content-Type.

use std::fmt::Write as _;

use consign_notifier::is_bidi_control;

use super::error::ApiError;

/// Maximum length of a file name in bytes, as on common filesystems.
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Valid media type with a parameter, shown in error messages.
const MEDIA_TYPE_EXAMPLE: &str = "text/plain; charset=utf-8";

/// Quotes a value that a client sent, for an error message.
///
/// The value appears as sent between double quotes, because the JSON body of the
/// error escapes `"` and `\` once itself, and Rust's `{:?}` would escape them a second
/// time. Control characters and bidirectional controls, which a reader cannot see, are
/// written as `<U+XXXX>`.
pub fn quoted(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if c.is_control() || is_bidi_control(c) {
            let _ = write!(quoted, "<U+{:04X}>", u32::from(c));
        } else {
            quoted.push(c);
        }
    }
    quoted.push('"');
    quoted
}

/// Checks a document's file name.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `field` for a missing or empty name, a name with a control
/// character, a bidirectional control, `/` or `\`, the names `.` and `..`, or more than
/// 255 bytes.
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
            "contains the bidirectional control U+{:04X}, which makes a name display in another \
             order than it is read, such as with a false extension; remove it",
            u32::from(c)
        ))
    } else if name.contains('/') || name.contains('\\') {
        Some("contains a path separator; send the file name alone, without folders".to_owned())
    } else if name == "." || name == ".." {
        Some("is a directory name".to_owned())
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

/// Checks the file name of a document part, given the name that the multipart parser
/// read from `filename` and the raw Content-Disposition header.
///
/// RFC 7578 section 4.2 forbids the `filename*` parameter of RFC 5987 in
/// multipart/form-data, and this server reads `filename` with UTF-8 as is, as browsers
/// send it. A part with `filename*` whose `filename` is missing or blank gets an error
/// saying so, rather than one about a missing name. The raw header is needed because
/// multer 3.1 reads nothing from a `filename*` that comes before `filename`. A part
/// with `filename` before `filename*` passes with the `filename` value, which the
/// parser reads first.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `field` for `filename*` as above, and those of
/// [`check_file_name`].
pub fn check_part_file_name(
    field: &str,
    parsed: Option<&str>,
    content_disposition: Option<&str>,
) -> Result<String, ApiError> {
    let parsed_blank = parsed.is_none_or(|name| name.trim().is_empty());
    if parsed_blank && content_disposition.is_some_and(has_extended_file_name) {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field}: the part's Content-Disposition has a filename* parameter, which \
                 RFC 7578 section 4.2 forbids in multipart/form-data; leave filename* out and \
                 send the name in filename=, in UTF-8 as is, such as \
                 filename=\"Vertrag März.pdf\""
            ),
        ));
    }
    check_file_name(field, parsed)
}

/// Returns true when a Content-Disposition value has a `filename*` parameter. Parameter
/// names are case-insensitive.
fn has_extended_file_name(content_disposition: &str) -> bool {
    split_parameters(content_disposition)
        .into_iter()
        .skip(1)
        .any(|parameter| {
            let name = parameter.split('=').next().unwrap_or("");
            name.trim().eq_ignore_ascii_case("filename*")
        })
}

/// Rejects a file name that an earlier document of the same delivery has, because a
/// recipient could not tell the two documents apart.
///
/// Names are compared byte for byte after [`check_file_name`] trimmed them, so
/// `Report.pdf` and `report.pdf` are two names.
/// NOTE: the NFC and NFD forms of one name look the same to a recipient but count as
/// two names, because no dependency of this crate normalizes Unicode.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `field`, naming the index of the earlier document.
pub fn check_unique_file_name<'a>(
    field: &str,
    name: &str,
    earlier: impl IntoIterator<Item = &'a str>,
) -> Result<(), ApiError> {
    let Some(index) = earlier.into_iter().position(|other| other == name) else {
        return Ok(());
    };
    Err(ApiError::invalid(
        field,
        format!(
            "{field} {} is also the file name of documents[{index}]; a recipient could not \
             tell the two apart, so give each document of a delivery its own name",
            quoted(name)
        ),
    ))
}

/// Checks a document's media type, defaulting to `application/octet-stream`.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `field` unless it has the form `type/subtype` in visible
/// ASCII without spaces, followed by `name=value` parameters as RFC 2045 section 5.1
/// defines them.
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
    let problem = split_parameters(media_type)
        .into_iter()
        .skip(1)
        .find_map(parameter_problem);
    match problem {
        Some(problem) => Err(ApiError::invalid(
            field,
            format!("{field} {} {problem}", quoted(media_type)),
        )),
        None => Ok(media_type.to_owned()),
    }
}

/// Splits a header value at each `;` outside a quoted string. The first piece is the
/// value before any parameter, and each later piece is one parameter as sent.
fn split_parameters(value: &str) -> Vec<&str> {
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
    fn quoted_shows_backslash_once() {
        assert_eq!(quoted(r#"a\b"c"#), r#""a\b"c""#);
        assert_eq!(
            quoted("x\ty\u{85}\u{202E}"),
            r#""x<U+0009>y<U+0085><U+202E>""#
        );
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
    fn extended_file_name_rejected_with_reason() {
        let star = "form-data; name=\"document\"; filename*=UTF-8''a.pdf";
        let error = check_part_file_name("f", None, Some(star))
            .unwrap_err()
            .to_string();
        assert!(error.contains("RFC 7578 section 4.2"), "{error}");

        let both = "form-data; name=\"document\"; filename=\"a.pdf\"; filename*=UTF-8''b.pdf";
        assert_eq!(
            check_part_file_name("f", Some("a.pdf"), Some(both)).unwrap(),
            "a.pdf"
        );

        // Inside a quoted value, `filename*` is no parameter.
        let quoted_value = "form-data; name=\"x; filename*=y\"";
        let error = check_part_file_name("f", None, Some(quoted_value))
            .unwrap_err()
            .to_string();
        assert!(error.contains("is missing"), "{error}");
    }

    #[test]
    fn repeated_file_name_names_earlier_index() {
        let earlier = ["a.pdf", "b.pdf"];
        assert!(check_unique_file_name("f", "A.pdf", earlier).is_ok());
        let error = check_unique_file_name("documents[2].file_name", "b.pdf", earlier)
            .unwrap_err()
            .to_string();
        assert!(error.contains("documents[1]"), "{error}");
    }
}
