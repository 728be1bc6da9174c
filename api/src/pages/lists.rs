//! The sender's mailing lists: the overview, the form that creates or replaces a list,
//! a link that starts a delivery to a list, and a button that removes one.
//!
//! Saving records `MailingListDefined` through the same function as
//! `PUT /api/lists/{name}`, which replaces any list of that name; removing goes through
//! the function of `DELETE /api/lists/{name}`.

use std::fmt::Write;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use consign_schemas::events::Role;
use serde::Deserialize;

use super::form::{
    FormError, csrf_input, error_summary, field_state, parse_recipient_lines, recipient_line,
    text_input,
};
use super::layout::{Section, html_response, page};
use super::session::{PageCaller, PageError, see_other, urlencode};
use crate::app::Core;
use crate::app::accounts::{define_list, remove_list};
use crate::web::html::escape;

/// JSON field names of a list and the inputs that show their errors.
const INPUTS: &[(&str, &str)] = &[("name", "name"), ("members", "members")];

/// `GET /lists`: the caller's mailing lists.
pub(crate) async fn index(
    State(core): State<Arc<Core>>,
    caller: PageCaller,
    Query(query): Query<SavedQuery>,
) -> Result<Response, PageError> {
    caller.require(&[Role::Sender])?;
    let mut body = String::from("<h1>Mailing lists</h1>\n");
    if let Some(saved) = &query.saved {
        let _ = writeln!(
            body,
            "<p class=\"notice\" role=\"status\">The list {} was saved.</p>",
            escape(saved)
        );
    }
    if let Some(removed) = &query.removed {
        let _ = writeln!(
            body,
            "<p class=\"notice\" role=\"status\">The list {} was removed.</p>",
            escape(removed)
        );
    }
    body.push_str("<p><a class=\"button\" href=\"/lists/new\">New mailing list</a></p>\n");
    let lists: Vec<(String, Vec<String>)> = core
        .model()
        .mailing_lists(caller.caller.account.id)
        .map(|(name, members)| {
            (
                name.to_owned(),
                members
                    .iter()
                    .map(|mailbox| mailbox.address.clone())
                    .collect(),
            )
        })
        .collect();
    if lists.is_empty() {
        body.push_str("<p>You have no mailing lists yet.</p>\n");
    } else {
        body.push_str(
            "<div class=\"scroll\"><table class=\"stack\">\n<thead><tr><th scope=\"col\">List</th>\
             <th scope=\"col\">Members</th><th scope=\"col\">Actions</th></tr></thead>\n<tbody>\n",
        );
        for (name, members) in &lists {
            let shown: Vec<String> = members
                .iter()
                .take(5)
                .map(|address| escape(address))
                .collect();
            let more = if members.len() > 5 {
                format!(" and {} more", members.len() - 5)
            } else {
                String::new()
            };
            let encoded = escape(&urlencode(name));
            let _ = writeln!(
                body,
                "<tr><td data-label=\"List\">{}</td><td data-label=\"Members\">{} \
                 <br><small>{}{more}</small></td><td data-label=\"Actions\">\
                 <a href=\"/lists/edit?name={encoded}\">Edit<span class=\"visually-hidden\"> {}</span></a> \
                 &middot; <a href=\"/compose?list={encoded}\">Send to this list</a>\
                 <form method=\"post\" action=\"/lists/remove\" class=\"inline\">{}\
                 <input type=\"hidden\" name=\"name\" value=\"{}\">\
                 <button type=\"submit\" class=\"danger\">Remove<span class=\"visually-hidden\"> {}</span></button>\
                 </form></td></tr>",
                escape(name),
                members.len(),
                shown.join(", "),
                escape(name),
                csrf_input(&caller.csrf).trim_end(),
                escape(name),
                escape(name),
            );
        }
        body.push_str("</tbody></table></div>\n");
    }
    Ok(html_response(
        StatusCode::OK,
        page(
            "Mailing lists",
            Some(caller.viewer()),
            Section::Lists,
            &body,
        ),
    ))
}

/// Query of the overview after a save.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct SavedQuery {
    saved: Option<String>,
    removed: Option<String>,
}

/// Fields of the remove button of a list.
#[derive(Debug, Deserialize)]
pub(crate) struct RemoveForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
}

/// `POST /lists/remove`: removes a list and returns to the overview.
pub(crate) async fn remove(
    State(core): State<Arc<Core>>,
    caller: PageCaller,
    Form(form): Form<RemoveForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(form.csrf.as_deref())?;
    caller.require(&[Role::Sender])?;
    remove_list(&core, &caller.caller, &form.name).await?;
    Ok(see_other(&format!(
        "/lists?removed={}",
        urlencode(&form.name)
    )))
}

/// `GET /lists/new`: an empty list form.
pub(crate) async fn new_list(caller: PageCaller) -> Result<Response, PageError> {
    caller.require(&[Role::Sender])?;
    Ok(render(&caller, "", "", false, None, StatusCode::OK))
}

/// Query of the edit form.
#[derive(Debug, Deserialize)]
pub(crate) struct EditQuery {
    name: String,
}

/// `GET /lists/edit?name=NAME`: the form with the list's members.
pub(crate) async fn edit(
    State(core): State<Arc<Core>>,
    caller: PageCaller,
    Query(query): Query<EditQuery>,
) -> Result<Response, PageError> {
    caller.require(&[Role::Sender])?;
    let members = core
        .model()
        .mailing_list(caller.caller.account.id, &query.name)
        .map(|members| {
            members
                .iter()
                .map(recipient_line)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .ok_or_else(|| crate::app::ApiError::not_found(format!("mailing list {:?}", query.name)))?;
    Ok(render(
        &caller,
        &query.name,
        &members,
        true,
        None,
        StatusCode::OK,
    ))
}

/// Fields of the list form.
#[derive(Debug, Deserialize)]
pub(crate) struct ListForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    members: String,
    /// Set when editing, so the name cannot change by accident.
    #[serde(default)]
    existing: bool,
}

/// `POST /lists`: saves a list and returns to the overview.
pub(crate) async fn save(
    State(core): State<Arc<Core>>,
    caller: PageCaller,
    Form(form): Form<ListForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(form.csrf.as_deref())?;
    caller.require(&[Role::Sender])?;
    let name = form.name.trim();
    let members = parse_recipient_lines(&form.members);
    match define_list(&core, &caller.caller, name, &members).await {
        Ok(_) => Ok(see_other(&format!("/lists?saved={}", urlencode(name)))),
        Err(error) => {
            let status = error.status();
            let error = FormError::from_api(&error, INPUTS);
            Ok(render(
                &caller,
                &form.name,
                &form.members,
                form.existing,
                Some(&error),
                status,
            ))
        }
    }
}

fn render(
    caller: &PageCaller,
    name: &str,
    members: &str,
    existing: bool,
    error: Option<&FormError>,
    status: StatusCode,
) -> Response {
    let title = if existing {
        "Edit mailing list"
    } else {
        "New mailing list"
    };
    let mut body = format!("<h1>{title}</h1>\n");
    body.push_str(&error_summary(error));
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/lists\">\n{}",
        csrf_input(&caller.csrf)
    );
    if existing {
        body.push_str("<input type=\"hidden\" name=\"existing\" value=\"true\">\n");
        let _ = write!(
            body,
            "<input type=\"hidden\" name=\"name\" value=\"{}\">\n<p><strong>List:</strong> {}</p>\n",
            escape(name),
            escape(name)
        );
    } else {
        body.push_str(&text_input(
            "name",
            "List name",
            Some("Saving a name you already use replaces that list."),
            name,
            " required maxlength=\"100\" aria-describedby=\"name-hint\"",
            error,
        ));
    }
    let state = field_state("members", error);
    let _ = write!(
        body,
        "<div class=\"field\"><label for=\"members\">Members</label>\n\
         <p class=\"hint\" id=\"members-hint\">One per line, as name@example.org or \
         Name &lt;name@example.org&gt;; 1 to 1,000 members.</p>\n{}\
         <textarea id=\"members\" name=\"members\" rows=\"8\" required spellcheck=\"false\"{}>{}</textarea></div>\n\
         <div class=\"actions\"><button type=\"submit\">Save list</button>\
         <a href=\"/lists\">Cancel</a></div>\n</form>\n",
        state.message,
        state.attributes,
        escape(members),
    );
    html_response(
        status,
        page(title, Some(caller.viewer()), Section::Lists, &body),
    )
}
