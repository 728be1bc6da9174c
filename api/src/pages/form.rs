//! Form helpers shared by the pages: the error summary and field errors built from the
//! API's errors, labelled inputs, and the parsing of recipient lines.

use std::fmt::Write;

use crate::app::ApiError;
use crate::app::recipients::RecipientInput;
use crate::web::html::escape;

/// An error to show on a form: the input it belongs to and the message.
#[derive(Debug, Clone)]
pub(crate) struct FormError {
    /// The `id` of the input, or `None` for an error about the whole form.
    pub(crate) input: Option<String>,
    pub(crate) message: String,
}

impl FormError {
    /// Maps an API error to the input of a form.
    ///
    /// The API names fields as its JSON does (`recipients[2]`, `documents[0].file_name`,
    /// `members[4]`). `inputs` maps each JSON field name to the form's input id, and
    /// the error of a numbered item names its line in the multi-line input.
    pub(crate) fn from_api(error: &ApiError, inputs: &[(&str, &str)]) -> Self {
        let field = match error {
            ApiError::Invalid { field, .. } => Some(field.as_str()),
            ApiError::BadRequest { field, .. } => field.as_deref(),
            ApiError::LimitExceeded { limit, .. } => Some(*limit),
            _ => None,
        };
        let message = error.to_string();
        let Some(field) = field else {
            return Self {
                input: None,
                message,
            };
        };
        let (base, index) = split_index(field);
        let input = inputs
            .iter()
            .find(|(json, _)| *json == base)
            .map(|(_, input)| (*input).to_owned());
        let message = match (index, &input) {
            (Some(index), Some(_)) => format!("Line {}: {message}", index + 1),
            _ => message,
        };
        Self { input, message }
    }
}

/// Splits `recipients[2].name` into `recipients` and 2.
fn split_index(field: &str) -> (&str, Option<usize>) {
    let Some((base, rest)) = field.split_once('[') else {
        return (field, None);
    };
    let index = rest
        .split_once(']')
        .and_then(|(number, _)| number.parse().ok());
    (base, index)
}

/// Renders the error summary at the top of a form, focused by the script after an
/// upload and announced by screen readers.
pub(crate) fn error_summary(error: Option<&FormError>) -> String {
    let Some(error) = error else {
        return String::new();
    };
    let link = error.input.as_ref().map_or_else(String::new, |input| {
        format!(" <a href=\"#{}\">Go to the field</a>", escape(input))
    });
    format!(
        "<div id=\"error-summary\" class=\"error-summary\" role=\"alert\" tabindex=\"-1\">\
         <p><strong>The form was not sent.</strong> {}{link}</p></div>\n",
        escape(&error.message)
    )
}

/// Attributes and message of an input that may carry the form's error.
pub(crate) struct FieldState {
    /// ` aria-invalid="true" aria-describedby="ID-error"` or empty.
    pub(crate) attributes: String,
    /// The `<p>` with the message, or empty.
    pub(crate) message: String,
}

/// Returns the error state of input `id`.
pub(crate) fn field_state(id: &str, error: Option<&FormError>) -> FieldState {
    match error {
        Some(error) if error.input.as_deref() == Some(id) => FieldState {
            attributes: format!(" aria-invalid=\"true\" aria-describedby=\"{id}-error\""),
            message: format!(
                "<p id=\"{id}-error\" class=\"field-error\">{}</p>\n",
                escape(&error.message)
            ),
        },
        _ => FieldState {
            attributes: String::new(),
            message: String::new(),
        },
    }
}

/// Renders a labelled one-line text input with an optional hint.
pub(crate) fn text_input(
    id: &str,
    label: &str,
    hint: Option<&str>,
    value: &str,
    extra: &str,
    error: Option<&FormError>,
) -> String {
    let state = field_state(id, error);
    let mut html = format!("<div class=\"field\"><label for=\"{id}\">{label}</label>\n");
    if let Some(hint) = hint {
        let _ = writeln!(html, "<p class=\"hint\" id=\"{id}-hint\">{hint}</p>");
    }
    let _ = write!(
        html,
        "{}<input id=\"{id}\" name=\"{id}\" type=\"text\" value=\"{}\"{extra}{}>\n</div>\n",
        state.message,
        escape(value),
        state.attributes,
    );
    html
}

/// Renders a labelled checkbox that sends `true` when checked.
pub(crate) fn checkbox(id: &str, label: &str, hint: &str, checked: bool) -> String {
    format!(
        "<div class=\"check\"><input id=\"{id}\" name=\"{id}\" type=\"checkbox\" value=\"true\"{} \
         aria-describedby=\"{id}-hint\"> <label for=\"{id}\">{label}</label>\
         <p class=\"hint\" id=\"{id}-hint\">{hint}</p></div>\n",
        if checked { " checked" } else { "" }
    )
}

/// Renders the hidden form token input.
pub(crate) fn csrf_input(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">\n",
        escape(token)
    )
}

/// Parses recipient lines: `name@example.org` or `Name <name@example.org>`, one per
/// line, blank lines skipped.
pub(crate) fn parse_recipient_lines(text: &str) -> Vec<RecipientInput> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| match line.rsplit_once('<') {
            Some((name, rest)) if rest.ends_with('>') => RecipientInput::Named {
                address: rest.trim_end_matches('>').trim().to_owned(),
                name: Some(name.trim().trim_matches('"').to_owned())
                    .filter(|name| !name.is_empty()),
            },
            _ => RecipientInput::Address(line.to_owned()),
        })
        .collect()
}

/// Formats a mailbox as a recipient line that [`parse_recipient_lines`] reads back.
pub(crate) fn recipient_line(mailbox: &consign_schemas::events::Mailbox) -> String {
    match &mailbox.display_name {
        Some(name) => format!("{name} <{}>", mailbox.address),
        None => mailbox.address.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_lines_with_and_without_names() {
        let parsed = parse_recipient_lines(
            "bob@example.org\n\n  Chloé Dupré <chloe@example.org>  \n\"Q\" <q@example.org>",
        );

        assert_eq!(parsed.len(), 3);
        assert!(
            matches!(&parsed[0], RecipientInput::Address(address) if address == "bob@example.org")
        );
        assert!(matches!(
            &parsed[1],
            RecipientInput::Named { address, name: Some(name) }
                if address == "chloe@example.org" && name == "Chloé Dupré"
        ));
        assert!(
            matches!(&parsed[2], RecipientInput::Named { name: Some(name), .. } if name == "Q")
        );
    }

    #[test]
    fn api_field_maps_to_input_line() {
        let error = ApiError::invalid("recipients[1]", "recipients[1]: bad address");
        let mapped = FormError::from_api(&error, &[("recipients", "recipients")]);

        assert_eq!(mapped.input.as_deref(), Some("recipients"));
        assert_eq!(mapped.message, "Line 2: recipients[1]: bad address");
    }

    #[test]
    fn unknown_field_stays_on_form() {
        let error = ApiError::invalid("other", "something");
        let mapped = FormError::from_api(&error, &[("recipients", "recipients")]);

        assert_eq!(mapped.input, None);
        assert_eq!(mapped.message, "something");
    }
}
