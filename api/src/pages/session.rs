//! Page sessions and form tokens: the login and logout pages, the extractor that turns
//! the session cookie into the caller, and the CSRF check of every form.
//!
//! Pages use the same sessions as the JSON API ([`crate::app::auth`]), carried only
//! in the `consign_session` cookie (HttpOnly, SameSite=Strict, Secure over HTTPS); a
//! bearer header is ignored here. Each form carries a token derived from the session
//! token with BLAKE3 in key derivation mode, so it changes with every login, needs no
//! server state, and reveals nothing about the session token. The login form, which
//! has no session yet, uses a double-submit token: a random value both in a cookie
//! scoped to `/login` and in the form.

use std::sync::Arc;

use axum::Form;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use consign_schemas::events::Role;
use serde::Deserialize;

use super::layout::{Section, Viewer, html_response, page};
use crate::app::ApiError;
use crate::app::Core;
use crate::app::auth::{
    Caller, SESSION_COOKIE, check_credentials, expired_session_cookie, role_name, session_cookie,
};
use crate::app::recipient::ClientIp;
use crate::app::tokens::cookie_values;
use crate::web::html::escape;

/// BLAKE3 key derivation context of the form token of a session.
const FORM_TOKEN_CONTEXT: &str = "consign 2026-12-04 page form token v1";

/// Name of the double-submit cookie of the login form.
const LOGIN_FORM_COOKIE: &str = "consign_login_form";

/// The logged-in caller of a page, with the form token of its session.
#[derive(Debug, Clone)]
pub(crate) struct PageCaller {
    pub(crate) caller: Caller,
    session: String,
    /// The value every form of this session must send back as `csrf`.
    pub(crate) csrf: String,
}

impl PageCaller {
    /// Returns the header's view of the caller.
    pub(crate) fn viewer(&self) -> Viewer<'_> {
        Viewer {
            login: &self.caller.account.login,
            role: self.caller.account.role,
            csrf: &self.csrf,
        }
    }

    /// Checks the form token a form sent.
    ///
    /// # Errors
    ///
    /// [`PageError::Forbidden`] when it is missing or is not this session's.
    pub(crate) fn check_csrf(&self, submitted: Option<&str>) -> Result<(), PageError> {
        let expected = blake3::Hash::from_hex(&self.csrf).expect("the form token is hex");
        let matches = submitted
            .and_then(|text| blake3::Hash::from_hex(text.trim()).ok())
            // blake3::Hash compares in constant time.
            .is_some_and(|hash| hash == expected);
        if matches {
            return Ok(());
        }
        tracing::warn!(account = %self.caller.account.id, "form rejected: missing or wrong form token");
        Err(PageError::Forbidden {
            message: "This form is missing its security token or the token is out of date. \
                      Go back, reload the page and submit the form again."
                .to_owned(),
        })
    }

    /// Checks that the caller has one of `roles`, as the JSON API does.
    ///
    /// # Errors
    ///
    /// [`PageError::Api`] with [`ApiError::Forbidden`].
    pub(crate) fn require(&self, roles: &[Role]) -> Result<(), PageError> {
        self.caller.require(roles).map_err(PageError::Api)
    }

    /// Returns the session token, for closing the session.
    fn session(&self) -> &str {
        &self.session
    }
}

/// Returns the form token of a session token, as 64 hex digits.
fn form_token(session: &str) -> String {
    blake3::Hash::from(blake3::derive_key(FORM_TOKEN_CONTEXT, session.as_bytes()))
        .to_hex()
        .to_string()
}

impl FromRequestParts<Arc<Core>> for PageCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, core: &Arc<Core>) -> Result<Self, Response> {
        let session = cookie_values(&parts.headers, SESSION_COOKIE).find_map(|token| {
            let account = core.sessions.account(token, &core.model())?;
            Some((token.to_owned(), account))
        });
        let Some((session, account)) = session else {
            return Err(redirect_to_login(parts));
        };
        let csrf = form_token(&session);
        Ok(PageCaller {
            caller: Caller { account },
            session,
            csrf,
        })
    }
}

/// Redirects a request without a live session to the login page, which returns to the
/// requested page after login.
fn redirect_to_login(parts: &Parts) -> Response {
    let next = if parts.method == axum::http::Method::GET {
        parts.uri.path_and_query().map_or("/", |path| path.as_str())
    } else {
        "/"
    };
    let location = format!("/login?next={}", urlencode(next));
    see_other(&location)
}

/// Returns a 303 redirect to a path of this site.
pub(crate) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// Percent-encodes a query value.
pub(crate) fn urlencode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A failed page request, rendered as an HTML page with its status.
#[derive(Debug)]
pub(crate) enum PageError {
    /// A failure the JSON API would report, with the same status and message.
    Api(ApiError),
    /// A rejected form: no or a wrong form token.
    Forbidden { message: String },
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        PageError::Api(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            PageError::Api(error) => (error.status(), error.to_string()),
            PageError::Forbidden { message } => (StatusCode::FORBIDDEN, message.clone()),
        };
        if status.is_server_error() {
            tracing::error!(error = %message, status = status.as_u16(), "page request failed");
        }
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::CONFLICT => "Not possible now",
            _ if status.is_server_error() => "Server error",
            _ => "Request rejected",
        };
        let body = format!(
            "<h1>{title}</h1>\n<p class=\"error\" role=\"alert\">{}</p>\n\
             <p><a href=\"/\">Go to the start page</a></p>\n",
            escape(&message)
        );
        html_response(status, page(title, None, Section::None, &body))
    }
}

/// Query of the login page.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// Fields of the login form.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    csrf: String,
}

/// `GET /login`: the login form, with a new double-submit token.
pub(crate) async fn login_page(
    State(core): State<Arc<Core>>,
    Query(query): Query<LoginQuery>,
) -> Response {
    render_login(
        &core,
        StatusCode::OK,
        "",
        &safe_next(query.next.as_deref()),
        None,
    )
}

/// `POST /login`: checks the form token and the password, and opens a session.
pub(crate) async fn login(
    State(core): State<Arc<Core>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(Some(&form.next));
    let cookie_matches = cookie_values(&headers, LOGIN_FORM_COOKIE)
        .any(|value| !form.csrf.is_empty() && constant_time_eq(value, &form.csrf));
    if !cookie_matches {
        tracing::warn!(%ip, "login form rejected: missing or wrong form token");
        let message = "The login form expired or was not sent from this site. \
                       Enter your login and password again.";
        return render_login(
            &core,
            StatusCode::FORBIDDEN,
            &form.login,
            &next,
            Some(message),
        );
    }

    match check_credentials(&core, ip, &form.login, form.password).await {
        Ok(account) => {
            let token = core.sessions.open(&account);
            tracing::info!(account = %account.id, role = role_name(account.role), "page login");
            let target = if next == "/" {
                home_of(account.role).to_owned()
            } else {
                next
            };
            let mut response = see_other(&target);
            let cookie = session_cookie(&core, &token);
            response.headers_mut().append(
                SET_COOKIE,
                HeaderValue::from_str(&cookie).expect("the cookie is ASCII"),
            );
            response
                .headers_mut()
                .append(SET_COOKIE, expired_login_form_cookie(&core));
            response
        }
        Err(error) => {
            let status = error.status();
            let message = match &error {
                ApiError::BadCredentials => {
                    "The login or the password is wrong. Check both and try again.".to_owned()
                }
                other => other.to_string(),
            };
            render_login(&core, status, &form.login, &next, Some(&message))
        }
    }
}

/// Renders the login form with a fresh double-submit token in the form and a cookie.
fn render_login(
    core: &Core,
    status: StatusCode,
    login: &str,
    next: &str,
    error: Option<&str>,
) -> Response {
    let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let mut body = String::from("<h1>Log in</h1>\n");
    let described = if let Some(error) = error {
        body.push_str(&format!(
            "<div id=\"error-summary\" class=\"error-summary\" role=\"alert\" tabindex=\"-1\">\
             <p>{}</p></div>\n",
            escape(error)
        ));
        " aria-describedby=\"error-summary\""
    } else {
        ""
    };
    body.push_str(&format!(
        "<form method=\"post\" action=\"/login\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\n\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\n\
         <div class=\"field\"><label for=\"login\">Login</label>\n\
         <input id=\"login\" name=\"login\" type=\"text\" autocomplete=\"username\" \
         autocapitalize=\"none\" spellcheck=\"false\" required value=\"{}\"{described}></div>\n\
         <div class=\"field\"><label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required{described}></div>\n\
         <button type=\"submit\">Log in</button>\n</form>\n",
        escape(next),
        escape(login),
    ));
    let mut response = html_response(status, page("Log in", None, Section::None, &body));
    let cookie = format!(
        "{LOGIN_FORM_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict{}",
        if core.secure_cookies { "; Secure" } else { "" }
    );
    response.headers_mut().append(
        SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("the cookie is ASCII"),
    );
    response
}

fn expired_login_form_cookie(core: &Core) -> HeaderValue {
    let cookie = format!(
        "{LOGIN_FORM_COOKIE}=; Path=/login; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if core.secure_cookies { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&cookie).expect("the cookie is ASCII")
}

/// Keeps a `next` target only when it is a path of this site, so the login page
/// cannot redirect elsewhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn constant_time_eq(left: &str, right: &str) -> bool {
    blake3::hash(left.as_bytes()) == blake3::hash(right.as_bytes())
}

/// Returns the start page of a role.
pub(crate) fn home_of(role: Role) -> &'static str {
    match role {
        Role::Sender => "/sent",
        Role::Billing | Role::Admin => "/billing",
        Role::Auditor => "/audit",
    }
}

/// Fields of the logout form.
#[derive(Debug, Deserialize)]
pub(crate) struct LogoutForm {
    csrf: Option<String>,
}

/// `POST /logout`: ends the session and returns to the login page.
pub(crate) async fn logout(
    State(core): State<Arc<Core>>,
    caller: PageCaller,
    Form(form): Form<LogoutForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(form.csrf.as_deref())?;
    core.sessions.close(caller.session());
    tracing::info!(account = %caller.caller.account.id, "page logout");
    let mut response = see_other("/login");
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_str(&expired_session_cookie(&core)).expect("the cookie is ASCII"),
    );
    Ok(response)
}

/// `GET /`: the caller's start page, or the login page.
pub(crate) async fn home(caller: Result<PageCaller, Response>) -> Response {
    match caller {
        Ok(caller) => see_other(home_of(caller.caller.account.role)),
        Err(_) => see_other("/login"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_token_depends_on_session() {
        let first = form_token("session-one");
        let second = form_token("session-two");

        assert_eq!(first.len(), 64);
        assert_ne!(first, second);
        assert_eq!(first, form_token("session-one"));
    }

    #[test]
    fn next_target_stays_on_site() {
        assert_eq!(
            safe_next(Some("/sent?status=opened")),
            "/sent?status=opened"
        );
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
