//! The password page: any logged-in account changes its own password.
//!
//! The form goes through the same function as `POST /api/me/password`. On success the
//! browser gets the new session's cookie, since the change ends every earlier session,
//! the one of this browser included.

use std::fmt::Write;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::form::{FormError, csrf_input, error_summary, field_state};
use super::layout::{Section, html_response, page};
use super::session::{PageCaller, PageError, see_other};
use crate::app::Core;
use crate::app::auth::session_cookie;
use crate::app::credentials::{OwnPasswordChange, change_own_password};
use crate::app::recipient::ClientIp;

/// JSON field names of a change and the inputs that show their errors.
const INPUTS: &[(&str, &str)] = &[
    ("current_password", "current_password"),
    ("new_password", "new_password"),
];

/// Query of the page after a change.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct ChangedQuery {
    changed: Option<String>,
}

/// `GET /password`: the form.
pub(crate) async fn show(caller: PageCaller, Query(query): Query<ChangedQuery>) -> Response {
    render(&caller, query.changed.is_some(), None, StatusCode::OK)
}

/// Fields of the password form.
#[derive(Debug, Deserialize)]
pub(crate) struct PasswordForm {
    csrf: Option<String>,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

/// `POST /password`: changes the password and returns to the page with a notice.
pub(crate) async fn change(
    State(core): State<Arc<Core>>,
    ClientIp(ip): ClientIp,
    caller: PageCaller,
    Form(form): Form<PasswordForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(form.csrf.as_deref())?;
    let change = OwnPasswordChange {
        current_password: form.current_password,
        new_password: form.new_password,
    };
    match change_own_password(&core, ip, &caller.caller.account, change).await {
        Ok((token, _)) => {
            let mut response = see_other("/password?changed=1");
            let cookie = session_cookie(&core, &token);
            response.headers_mut().insert(
                SET_COOKIE,
                HeaderValue::from_str(&cookie).expect("the cookie is ASCII"),
            );
            Ok(response)
        }
        Err(error) => {
            let status = error.status();
            let error = FormError::from_api(&error, INPUTS);
            Ok(render(&caller, false, Some(&error), status))
        }
    }
}

/// Renders a password input; the entered value is never sent back.
fn password_input(id: &str, label: &str, autocomplete: &str, error: Option<&FormError>) -> String {
    let state = field_state(id, error);
    format!(
        "<div class=\"field\"><label for=\"{id}\">{label}</label>\n{}\
         <input id=\"{id}\" name=\"{id}\" type=\"password\" required \
         autocomplete=\"{autocomplete}\"{}>\n</div>\n",
        state.message, state.attributes,
    )
}

fn render(
    caller: &PageCaller,
    changed: bool,
    error: Option<&FormError>,
    status: StatusCode,
) -> Response {
    let mut body = String::from("<h1>Change your password</h1>\n");
    if changed {
        body.push_str(
            "<p class=\"notice\" role=\"status\">Your password was changed. Every other \
             session of this account has ended.</p>\n",
        );
    }
    body.push_str(&error_summary(error));
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/password\">\n{}",
        csrf_input(&caller.csrf)
    );
    body.push_str(&password_input(
        "current_password",
        "Current password",
        "current-password",
        error,
    ));
    body.push_str(&password_input(
        "new_password",
        "New password (at least 12 characters)",
        "new-password",
        error,
    ));
    body.push_str(
        "<div class=\"actions\"><button type=\"submit\">Change password</button></div>\n</form>\n",
    );
    html_response(
        status,
        page(
            "Change your password",
            Some(caller.viewer()),
            Section::None,
            &body,
        ),
    )
}
