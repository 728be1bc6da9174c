//! Reading a part's name and a document part's file name from its Content-Disposition
//! header.

use super::error::ApiError;
use super::media_type::{
    describe_repetition, parameter_name, repeated_parameter, split_parameters,
};
use super::names::{check_file_name, quoted};

/// Reads the file name of a document part from its raw Content-Disposition header and
/// checks it.
///
/// The name is the value of the `filename` parameter in any letter case, as RFC 2183
/// and RFC 7578 allow, quoted or not, with `\"` read as `"`. The header is parsed here
/// because multer 3.1 matches `filename` in lowercase only, also finds it inside another
/// parameter's quoted value, and reports a name that is not UTF-8 as no name.
///
/// RFC 7578 section 4.2 forbids the `filename*` parameter of RFC 5987 in
/// multipart/form-data, and this server reads `filename` in UTF-8 as browsers send it.
/// A part with `filename*` is therefore rejected in any position and letter case, so
/// that a client that put the real name there does not lose it. A parameter sent twice,
/// such as `filename="a"; filename="b"`, is rejected too, because either could be meant.
///
/// # Errors
///
/// [`ApiError::Invalid`] on `field` for a header that is not UTF-8, `filename*`, a
/// repeated parameter, a quoted name without its closing quote, and the errors of
/// [`check_file_name`].
pub fn check_part_file_name(
    field: &str,
    content_disposition: Option<&[u8]>,
) -> Result<String, ApiError> {
    let Some(raw) = content_disposition else {
        return check_file_name(field, None);
    };
    let Ok(value) = std::str::from_utf8(raw) else {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field}: the part's Content-Disposition is not valid UTF-8; send the file \
                 name in UTF-8, as browsers do, such as filename=\"Vertrag März.pdf\""
            ),
        ));
    };
    let parameters: Vec<&str> = split_parameters(value).into_iter().skip(1).collect();
    if let Some((first, second)) = repeated_parameter(&parameters) {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field}: the part's Content-Disposition has {}; send each parameter once, \
                 such as form-data; name=\"document\"; filename=\"Vertrag März.pdf\"",
                describe_repetition(first, second)
            ),
        ));
    }
    let extended = parameters
        .iter()
        .any(|parameter| parameter_name(parameter).eq_ignore_ascii_case("filename*"));
    if extended {
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
    let Some(parameter) = parameters
        .iter()
        .find(|parameter| parameter_name(parameter).eq_ignore_ascii_case("filename"))
    else {
        return check_file_name(field, None);
    };
    match parameter_value(parameter) {
        Some(name) => check_file_name(field, Some(&name)),
        None => Err(ApiError::invalid(
            field,
            format!(
                "{field}: the part's Content-Disposition has the invalid parameter {}, a quoted \
                 string without its closing quote or with text after it; send the name as \
                 one quoted string, such as filename=\"Vertrag März.pdf\"",
                quoted(parameter.trim())
            ),
        )),
    }
}

/// Returns the `name` parameter of a part's raw Content-Disposition header, in any
/// letter case, or `None` when it has none.
///
/// multer 3.1 matches `name` in lowercase only, so `NAME="document"` would otherwise
/// read as a part without a name. Bytes that are not UTF-8, which the file name check
/// rejects, are replaced here so that the part's name still reads.
pub fn part_name(content_disposition: Option<&[u8]>) -> Option<String> {
    let value = String::from_utf8_lossy(content_disposition?);
    split_parameters(&value)
        .into_iter()
        .skip(1)
        .find(|parameter| parameter_name(parameter).eq_ignore_ascii_case("name"))
        .and_then(parameter_value)
}

/// Returns the value of one `name=value` parameter: a quoted string without its quotes
/// and with `\"` read as `"`, or a token as it is.
///
/// Other backslashes stay, so that a Windows path in a name is rejected as a path. A
/// quoted string without its closing quote, or with text after it, gives `None`.
fn parameter_value(parameter: &str) -> Option<String> {
    let value = parameter
        .split_once('=')
        .map_or("", |(_, value)| value)
        .trim();
    let Some(quoted) = value.strip_prefix('"') else {
        return (!value.contains('"')).then(|| value.to_owned());
    };
    let mut text = String::with_capacity(quoted.len());
    let mut characters = quoted.char_indices();
    while let Some((index, c)) = characters.next() {
        match c {
            '"' => return quoted[index + 1..].trim().is_empty().then_some(text),
            '\\' => match characters.next() {
                Some((_, '"')) => text.push('"'),
                Some((_, other)) => {
                    text.push('\\');
                    text.push(other);
                }
                None => return None,
            },
            other => text.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_file_name_rejected_in_any_order() {
        let dispositions = [
            (
                "alone",
                "form-data; name=\"document\"; filename*=UTF-8''a.pdf",
            ),
            (
                "after filename",
                "form-data; name=\"document\"; filename=\"a.pdf\"; filename*=UTF-8''b.pdf",
            ),
            (
                "in capitals",
                "form-data; name=\"document\"; filename=\"a.pdf\"; FileName*=UTF-8''b.pdf",
            ),
        ];
        for (case, disposition) in dispositions {
            let error = check_part_file_name("f", Some(disposition.as_bytes()))
                .unwrap_err()
                .to_string();
            assert!(error.contains("RFC 7578 section 4.2"), "{case}: {error}");
        }

        // Inside a quoted value, `filename*` is no parameter.
        let quoted_value = "form-data; name=\"x; filename*=y\"";
        let error = check_part_file_name("f", Some(quoted_value.as_bytes()))
            .unwrap_err()
            .to_string();
        assert!(error.contains("is missing"), "{error}");
    }

    #[test]
    fn repeated_disposition_parameters_rejected() {
        let cases = [
            (
                "form-data; name=\"document\"; filename=\"a.pdf\"; filename=\"b.pdf\"",
                r#"the parameter "filename" twice;"#,
            ),
            (
                "form-data; name=\"document\"; filename=\"a.pdf\"; FILENAME=\"b.pdf\"",
                r#"the parameter "filename" twice (as "filename" and "FILENAME")"#,
            ),
            (
                "form-data; name=\"document\"; name=\"metadata\"; filename=\"a.pdf\"",
                r#"the parameter "name" twice;"#,
            ),
        ];
        for (disposition, problem) in cases {
            let error = check_part_file_name("f", Some(disposition.as_bytes()))
                .unwrap_err()
                .to_string();
            assert!(error.contains(problem), "{disposition}: {error}");
            assert!(error.contains("send each parameter once"), "{error}");
        }
        let single = "form-data; name=\"document\"; filename=\"a.pdf\"";
        assert_eq!(
            check_part_file_name("f", Some(single.as_bytes())).unwrap(),
            "a.pdf"
        );
    }

    #[test]
    fn filename_parameter_in_any_form() {
        let cases = [
            ("form-data; name=\"document\"; FILENAME=\"a.pdf\"", "a.pdf"),
            ("form-data; name=document; filename=a.pdf", "a.pdf"),
            (
                "form-data; name=\"document\"; filename = \"a b.pdf\" ",
                "a b.pdf",
            ),
            (
                "form-data; name=\"document\"; filename=\"say \\\"hi\\\".txt\"",
                "say \"hi\".txt",
            ),
            (
                "form-data; name=\"document\"; filename=\"a;b.pdf\"",
                "a;b.pdf",
            ),
            (
                "form-data; name=\"document\"; x=\"y; filename=evil.exe\"; filename=\"real.pdf\"",
                "real.pdf",
            ),
        ];
        for (disposition, name) in cases {
            assert_eq!(
                check_part_file_name("f", Some(disposition.as_bytes())).unwrap(),
                name,
                "{disposition}"
            );
        }

        let malformed = [
            "form-data; name=\"document\"; filename=\"a.pdf",
            "form-data; name=\"document\"; filename=\"a.pdf\"x",
            "form-data; name=\"document\"; filename=a\"b.pdf",
        ];
        for disposition in malformed {
            let error = check_part_file_name("f", Some(disposition.as_bytes()))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("invalid parameter"),
                "{disposition}: {error}"
            );
        }

        let windows = "form-data; name=\"document\"; filename=\"C:\\temp\\a.pdf\"";
        let error = check_part_file_name("f", Some(windows.as_bytes()))
            .unwrap_err()
            .to_string();
        assert!(error.contains("path separator"), "{error}");
    }

    #[test]
    fn part_name_in_any_case() {
        let cases = [
            (
                "form-data; name=\"document\"; filename=\"a.pdf\"",
                Some("document"),
            ),
            ("form-data; NAME=\"document\"", Some("document")),
            ("form-data; Name=metadata", Some("metadata")),
            ("form-data; filename=\"name=x\"", None),
            ("form-data", None),
        ];
        for (disposition, name) in cases {
            assert_eq!(
                part_name(Some(disposition.as_bytes())).as_deref(),
                name,
                "{disposition}"
            );
        }
        assert_eq!(part_name(None), None);
    }

    #[test]
    fn non_utf8_file_name_rejected() {
        let latin1 = b"form-data; name=\"document\"; filename=\"M\xE4rz.pdf\"";
        let error = check_part_file_name("documents[0].file_name", Some(latin1))
            .unwrap_err()
            .to_string();
        assert!(error.contains("documents[0].file_name"), "{error}");
        assert!(error.contains("not valid UTF-8"), "{error}");
        assert!(error.contains("in UTF-8"), "{error}");
    }
}
