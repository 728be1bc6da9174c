//! Server-rendered HTML pages for senders, the billing department and auditors.
//!
//! The pages work without JavaScript. A small script from this origin adds upload
//! progress, the browser's time zone as the default, and live recipient statuses over
//! server-sent events. The handlers call the same functions as the JSON API (the
//! submission, mailing list, withdrawal, tracking, billing and audit code in
//! [`crate::app`]), so every check and error message is the API's.
//!
//! | route | who | what |
//! | --- | --- | --- |
//! | `GET /`, `GET, POST /login`, `POST /logout` | anyone, then the caller | sessions |
//! | `GET, POST /compose` | sender | a new delivery, with upload progress |
//! | `GET /sent`, `GET /sent/live`, `GET /sent/{id}`, `POST /sent/{id}/withdraw` | sender | sent deliveries |
//! | `GET, POST /lists`, `GET /lists/new`, `GET /lists/edit`, `POST /lists/remove` | sender | mailing lists |
//! | `GET /billing`, `GET /billing/usage.csv` | billing, admin | usage and amounts |
//! | `GET /audit`, `GET /audit/deliveries/{id}` | auditor, admin | search and timelines |
//! | `GET, POST /password` | any account | its own password |
//! | `GET /assets/consign.css`, `GET /assets/consign.js` | anyone | style and script |
//!
//! Security: every form carries the session's form token ([`session`]), every page
//! carries the headers of [`layout::set_page_headers`] with a Content-Security-Policy
//! that allows no inline script or style, and no URL carries a secret.

mod audit;
mod billing;
mod compose;
mod compose_form;
mod form;
mod layout;
mod lists;
mod password;
mod sent;
mod sent_detail;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::map_response;
use axum::response::Response;
use axum::routing::{get, post};

use crate::app::Core;

/// Builds the page routes; the caller adds the state.
pub(crate) fn router() -> Router<Arc<Core>> {
    let pages = Router::new()
        .route("/", get(session::home))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route(
            "/compose",
            get(compose::form_page)
                .post(compose::submit)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/sent", get(sent::list))
        .route("/sent/live", get(sent::live))
        .route("/sent/{id}", get(sent::detail))
        .route("/sent/{id}/withdraw", post(sent::withdraw))
        .route("/lists", get(lists::index).post(lists::save))
        .route("/lists/new", get(lists::new_list))
        .route("/lists/remove", post(lists::remove))
        .route("/lists/edit", get(lists::edit))
        .route("/billing", get(billing::show))
        .route("/billing/usage.csv", get(billing::csv))
        .route("/password", get(password::show).post(password::change))
        .route("/audit", get(audit::search))
        .route("/audit/deliveries/{id}", get(audit::timeline))
        .layer(map_response(with_page_headers));
    let assets = Router::new()
        .route("/assets/consign.css", get(layout::stylesheet))
        .route("/assets/consign.js", get(layout::script))
        .layer(map_response(with_page_headers));
    pages.merge(assets)
}

async fn with_page_headers(mut response: Response) -> Response {
    layout::set_page_headers(response.headers_mut());
    response
}
