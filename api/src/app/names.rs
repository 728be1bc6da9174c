//! Checks on the file name and media type a client sends with a document. The name is
//! metadata only and never part of a path, but names that look like paths or carry
//! control characters are rejected so that no reader of the ledger is misled by them.

use consign_notifier::is_bidi_control;

use super::error::ApiError;

/// Maximum length of a file name in bytes, as on common filesystems.
pub const MAX_FILE_NAME_BYTES: usize = 255;

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
                "{field} {:?} {problem}",
                name.chars().take(80).collect::<String>()
            ),
        )),
        None => Ok(name.to_owned()),
    }
}

/// Checks a document's media type, defaulting to `application/octet-stream`.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `field` unless it has the form `type/subtype` in visible
/// ASCII without spaces, with optional parameters.
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
    if valid {
        return Ok(media_type.to_owned());
    }
    Err(ApiError::invalid(
        field,
        format!("{field} {media_type:?} is not a media type such as application/pdf"),
    ))
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
}
