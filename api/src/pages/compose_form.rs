//! The compose form as HTML: recipients and mailing lists, subject, message, every
//! option with its label and hint, the dates with their time zone, and the file input
//! last, so that browsers send every text field before the files.

use std::fmt::Write;

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::compose::ComposeFields;
use super::form::{FormError, checkbox, csrf_input, error_summary, field_state, text_input};
use super::layout::{Section, html_response, page};
use super::session::PageCaller;
use crate::app::Core;
use crate::web::html::escape;

/// Renders the compose form with `fields` and an optional error.
pub(super) fn render(
    core: &Core,
    caller: &PageCaller,
    fields: &ComposeFields,
    error: Option<&FormError>,
    status: StatusCode,
) -> Response {
    let lists: Vec<(String, usize)> = core
        .model()
        .mailing_lists(caller.caller.account.id)
        .map(|(name, members)| (name.to_owned(), members.len()))
        .collect();
    let idempotency = if fields.idempotency.is_empty() {
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
    } else {
        fields.idempotency.clone()
    };

    let mut body = String::from("<h1>New delivery</h1>\n");
    body.push_str(&error_summary(error));
    let _ = write!(
        body,
        "<form id=\"compose\" method=\"post\" action=\"/compose\" enctype=\"multipart/form-data\" \
         data-upload=\"true\">\n{}<input type=\"hidden\" name=\"idempotency\" value=\"{}\">\n",
        csrf_input(&caller.csrf),
        escape(&idempotency),
    );

    body.push_str("<fieldset><legend>Recipients</legend>\n");
    let state = field_state("recipients", error);
    let _ = write!(
        body,
        "<div class=\"field\"><label for=\"recipients\">E-mail addresses</label>\n\
         <p class=\"hint\" id=\"recipients-hint\">One per line, as name@example.org or \
         Name &lt;name@example.org&gt;.</p>\n{}<textarea id=\"recipients\" name=\"recipients\" \
         rows=\"4\" autocomplete=\"off\" spellcheck=\"false\"{}>{}</textarea></div>\n",
        state.message,
        state.attributes,
        escape(&fields.recipients),
    );
    push_lists(&mut body, &lists, &fields.lists, error);
    body.push_str("</fieldset>\n");

    body.push_str(&text_input(
        "subject",
        "Subject",
        None,
        &fields.subject,
        &format!(" required maxlength=\"{}\"", core.limits.max_subject_chars),
        error,
    ));
    let state = field_state("message", error);
    let _ = write!(
        body,
        "<div class=\"field\"><label for=\"message\">Message</label>\n\
         <p class=\"hint\">Shown to the recipients with the documents. Optional.</p>\n\
         {}<textarea id=\"message\" name=\"message\" rows=\"5\"{}>{}</textarea></div>\n",
        state.message,
        state.attributes,
        escape(&fields.message),
    );

    push_options(&mut body, fields, error);

    // The file input comes last, so browsers send every text field before the files.
    let state = field_state("documents", error);
    let again = if error.is_some() {
        " After an error, choose the files again."
    } else {
        ""
    };
    let _ = write!(
        body,
        "<div class=\"field\"><label for=\"documents\">Documents</label>\n\
         <p class=\"hint\">Choose one or more files.{again}</p>\n{}\
         <input id=\"documents\" name=\"document\" type=\"file\" multiple required{}></div>\n",
        state.message, state.attributes,
    );

    body.push_str(
        "<div class=\"actions\"><button type=\"submit\">Send delivery</button></div>\n\
         <div class=\"upload-status\"><progress id=\"upload-progress\" max=\"100\" value=\"0\" \
         hidden aria-labelledby=\"upload-text\"></progress>\
         <p id=\"upload-text\" aria-live=\"polite\"></p></div>\n</form>\n",
    );
    html_response(
        status,
        page(
            "New delivery",
            Some(caller.viewer()),
            Section::Compose,
            &body,
        ),
    )
}

fn push_lists(
    body: &mut String,
    lists: &[(String, usize)],
    chosen: &[String],
    error: Option<&FormError>,
) {
    let state = field_state("lists", error);
    if lists.is_empty() {
        body.push_str(
            "<p class=\"hint\" id=\"lists\">You have no mailing lists yet. \
             <a href=\"/lists/new\">Create one</a> to send to a group.</p>\n",
        );
        return;
    }
    let _ = write!(
        body,
        "<fieldset id=\"lists\"{}><legend>Mailing lists</legend>\n{}",
        state.attributes, state.message
    );
    for (index, (name, members)) in lists.iter().enumerate() {
        let checked = if chosen.iter().any(|list| list == name) {
            " checked"
        } else {
            ""
        };
        let _ = writeln!(
            body,
            "<div class=\"check\"><input id=\"list-{index}\" name=\"lists\" type=\"checkbox\" \
             value=\"{}\"{checked}> <label for=\"list-{index}\">{} ({members} {})</label></div>",
            escape(name),
            escape(name),
            if *members == 1 { "member" } else { "members" },
        );
    }
    body.push_str("</fieldset>\n");
}

fn push_options(body: &mut String, fields: &ComposeFields, error: Option<&FormError>) {
    body.push_str("<fieldset><legend>Options</legend>\n");
    let state = field_state("password", error);
    let _ = write!(
        body,
        "<div class=\"field\"><label for=\"password\">Access password</label>\n\
         <p class=\"hint\" id=\"password-hint\">Recipients must enter it before they see the \
         documents; give it to them by another route, such as a phone call. At least 8 \
         characters. Leave empty for no password. After an error, enter it again.</p>\n\
         {}<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\"{}></div>\n",
        state.message, state.attributes,
    );

    let state = field_state("priority", error);
    let _ = write!(
        body,
        "<div class=\"field\"><label for=\"priority\">Priority</label>\n{}\
         <select id=\"priority\" name=\"priority\"{}>",
        state.message, state.attributes
    );
    for (value, label) in [("normal", "Normal"), ("high", "High"), ("urgent", "Urgent")] {
        let selected = if fields.priority == value {
            " selected"
        } else {
            ""
        };
        let _ = write!(body, "<option value=\"{value}\"{selected}>{label}</option>");
    }
    body.push_str("</select></div>\n");

    push_times(body, fields, error);
    body.push_str(&text_input(
        "billing_code",
        "Billing code",
        Some("Groups this delivery on the bill, such as a client or matter number. Optional."),
        &fields.billing_code,
        " maxlength=\"64\" aria-describedby=\"billing_code-hint\"",
        error,
    ));
    body.push_str(&checkbox(
        "receipt",
        "Send me a receipt",
        "An e-mail to you when each recipient has downloaded the documents.",
        fields.receipt,
    ));
    body.push_str(&checkbox(
        "postmark",
        "Electronic postmark",
        "A signed receipt of the submission time and the documents' hashes, which anyone can check.",
        fields.postmark,
    ));
    body.push_str(&checkbox(
        "encrypt",
        "Encrypt the documents at rest",
        "The server stores the documents encrypted.",
        fields.encrypt,
    ));
    let state = field_state("require_tls", error);
    body.push_str(&state.message);
    body.push_str(&checkbox(
        "require_tls",
        "Require TLS",
        "Send the e-mails and links only over encrypted connections; rejected when the server cannot.",
        fields.require_tls,
    ));
    body.push_str("</fieldset>\n");
}

fn push_times(body: &mut String, fields: &ComposeFields, error: Option<&FormError>) {
    let zone = if fields.time_zone.is_empty() {
        "UTC"
    } else {
        &fields.time_zone
    };
    let _ = write!(
        body,
        "<fieldset><legend>Dates</legend>\n<p class=\"hint\">Both are optional and are in the \
         time zone <strong id=\"time_zone_shown\">{}</strong>.</p>\n",
        escape(zone)
    );
    for (id, label, hint) in [
        (
            "deliver_at",
            "Delivery date",
            "The documents become available then; empty for at once.",
        ),
        (
            "expires_at",
            "Expiration date",
            "The documents can no longer be downloaded after it; empty for never.",
        ),
    ] {
        let state = field_state(id, error);
        let value = match id {
            "deliver_at" => &fields.deliver_at,
            _ => &fields.expires_at,
        };
        let _ = write!(
            body,
            "<div class=\"field\"><label for=\"{id}\">{label}</label>\n\
             <p class=\"hint\" id=\"{id}-hint\">{hint}</p>\n{}\
             <input id=\"{id}\" name=\"{id}\" type=\"datetime-local\" value=\"{}\"{}></div>\n",
            state.message,
            escape(value),
            state.attributes,
        );
    }
    let state = field_state("time_zone", error);
    let chosen = if fields.time_zone.is_empty() {
        "false"
    } else {
        "true"
    };
    let _ = write!(
        body,
        "<div class=\"field\"><label for=\"time_zone\">Time zone of the dates</label>\n{}\
         <select id=\"time_zone\" name=\"time_zone\" data-chosen=\"{chosen}\"{}>",
        state.message, state.attributes
    );
    let mut zones: Vec<String> = jiff::tz::db()
        .available()
        .map(|name| name.to_string())
        .collect();
    zones.sort();
    if !zones.iter().any(|name| name == "UTC") {
        zones.insert(0, "UTC".to_owned());
    }
    for name in zones {
        let selected = if name == zone { " selected" } else { "" };
        let name = escape(&name);
        let _ = write!(body, "<option value=\"{name}\"{selected}>{name}</option>");
    }
    body.push_str("</select></div>\n</fieldset>\n");
}
