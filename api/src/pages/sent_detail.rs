//! The body of a sent delivery's page: facts and options from the model, each
//! recipient's live status and steps from the tracking view, the timeline, the
//! documents, the receipt and evidence links, and the withdrawal form.

use std::fmt::Write;

use consign_projections::model::Availability;
use consign_projections::tracking::DeliveryTracking;
use consign_schemas::events::Priority;
use consign_schemas::{DeliveryId, Timestamp};

use super::layout::{maybe_time, time_element};
use super::sent::{status_badge, status_labels_attribute, withdraw_form};
use super::session::PageCaller;
use crate::app::Core;
use crate::app::deliveries::status_name;
use crate::web::html::escape;
use crate::zoned::format_for_sender;

/// Renders the page body; `notices` is already escaped.
pub(crate) fn render(
    core: &Core,
    caller: &PageCaller,
    delivery: DeliveryId,
    tracking: &DeliveryTracking,
    notices: &str,
) -> String {
    let model = core.model();
    let Some(record) = model.delivery(delivery) else {
        return "<p>The delivery is no longer known.</p>".to_owned();
    };
    let availability = record.availability(core.clock.now());
    let status = status_name(availability);
    let summary = &tracking.summary;

    let mut body = String::new();
    let _ = writeln!(
        body,
        "<h1>{} <span class=\"status status-{status}\">{}</span></h1>\n{notices}",
        escape(&record.subject),
        capitalized(status)
    );

    body.push_str("<dl class=\"facts\">\n");
    fact(&mut body, "Submitted", &time_element(record.submitted.time));
    fact(
        &mut body,
        "Delivery id",
        &format!("<code>{delivery}</code>"),
    );
    fact(
        &mut body,
        "Ledger event",
        &format!(
            "chain {}, position {}, hash <code>{}</code>",
            record.submitted.chain, record.submitted.position, record.submitted.hash
        ),
    );
    let options = &record.options;
    let priority = match options.priority {
        Priority::Normal => "Normal",
        Priority::High => "High",
        Priority::Urgent => "Urgent",
    };
    fact(&mut body, "Priority", priority);
    fact(
        &mut body,
        "Access password",
        yes_no(options.access_password_hash.is_some()),
    );
    fact(
        &mut body,
        "Receipt e-mails",
        yes_no(options.receipt_requested),
    );
    fact(&mut body, "Electronic postmark", yes_no(options.postmark));
    fact(
        &mut body,
        "Encrypted at rest",
        yes_no(options.encrypt_at_rest),
    );
    fact(&mut body, "Require TLS", yes_no(options.require_tls));
    fact(
        &mut body,
        "Billing code",
        &options
            .billing_code
            .as_deref()
            .map_or_else(|| "&ndash;".to_owned(), escape),
    );
    let zoned = |time: Option<&consign_schemas::events::ZonedTime>| {
        time.map_or_else(
            || "&ndash;".to_owned(),
            |time| escape(&format_for_sender(time)),
        )
    };
    fact(
        &mut body,
        "Delivery date",
        &zoned(options.deliver_at.as_ref()),
    );
    fact(
        &mut body,
        "Expiration date",
        &zoned(options.expires_at.as_ref()),
    );
    if let Some(withdrawal) = &record.withdrawn {
        let reason = if withdrawal.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", escape(&withdrawal.reason))
        };
        fact(
            &mut body,
            "Withdrawn",
            &format!("{}{reason}", time_element(withdrawal.at)),
        );
    }
    body.push_str("</dl>\n");
    if !record.message.trim().is_empty() {
        let _ = writeln!(
            body,
            "<h2>Message</h2>\n<p>{}</p>",
            escape(&record.message).replace('\n', "<br>")
        );
    }

    let _ = write!(
        body,
        "<h2>Recipients</h2>\n<p id=\"live-note\" class=\"hint\" aria-live=\"polite\"></p>\n\
         <div class=\"scroll\" data-live-events=\"/api/tracking/deliveries/{delivery}/events\" \
         data-status-labels=\"{}\">\n<table class=\"stack\">\n\
         <thead><tr><th scope=\"col\">Recipient</th><th scope=\"col\">Status</th>\
         <th scope=\"col\">E-mail sent</th><th scope=\"col\">Opened</th>\
         <th scope=\"col\">Downloads</th></tr></thead>\n<tbody>\n",
        status_labels_attribute()
    );
    for (index, recipient) in tracking.recipients.iter().enumerate() {
        let Some(summary_row) = summary.recipients.get(index) else {
            continue;
        };
        let name = recipient
            .mailbox
            .display_name
            .as_deref()
            .map_or_else(String::new, |name| format!("{} ", escape(name)));
        let id = recipient.recipient.to_string();
        let list = recipient
            .via_list
            .as_deref()
            .map_or_else(String::new, |list| {
                format!("<br><small>via list {}</small>", escape(list))
            });
        let _ = writeln!(
            body,
            "<tr><td data-label=\"Recipient\">{name}&lt;{}&gt;{list}</td>\
             <td data-label=\"Status\">{}</td>\
             <td data-label=\"E-mail sent\" data-recipient-notified=\"{id}\">{}</td>\
             <td data-label=\"Opened\" data-recipient-opened=\"{id}\">{}</td>\
             <td data-label=\"Downloads\" data-recipient-downloads=\"{id}\">{}</td></tr>",
            escape(&recipient.mailbox.address),
            status_badge(&id, summary_row.status),
            maybe_time(recipient.notified_at),
            maybe_time(recipient.opened_at),
            recipient.downloads.len(),
        );
    }
    body.push_str("</tbody></table></div>\n");

    push_documents(&mut body, &model, &record.documents);
    push_timeline(&mut body, tracking);

    body.push_str("<h2>Receipts and evidence</h2>\n<ul>\n");
    if record.postmark.is_some() {
        let _ = writeln!(
            body,
            "<li><a href=\"/api/deliveries/{delivery}/postmark?format=html\">Postmark receipt</a> \
             (<a href=\"/api/deliveries/{delivery}/postmark?format=json\" download=\"postmark-{delivery}.json\">JSON</a>)</li>"
        );
    } else if options.postmark {
        body.push_str("<li>The postmark is being issued; reload in a few seconds.</li>\n");
    }
    let _ = writeln!(
        body,
        "<li><a href=\"/api/audit/deliveries/{delivery}/evidence\">Evidence bundle</a> \
         (JSON, checkable offline with <code>consign evidence verify</code>)</li>\n</ul>"
    );

    if matches!(
        availability,
        Availability::Available | Availability::NotYetReleased
    ) {
        body.push_str(&withdraw_form(delivery, &caller.csrf));
    }
    body
}

fn push_documents(
    body: &mut String,
    model: &consign_projections::model::Model,
    documents: &[consign_schemas::DocumentId],
) {
    body.push_str(
        "<h2>Documents</h2>\n<div class=\"scroll\"><table class=\"stack\">\n\
         <thead><tr><th scope=\"col\">Document</th><th scope=\"col\" class=\"number\">Size (bytes)</th>\
         <th scope=\"col\">BLAKE3 hash</th></tr></thead>\n<tbody>\n",
    );
    for document in documents.iter().filter_map(|id| model.document(*id)) {
        let _ = writeln!(
            body,
            "<tr><td data-label=\"Document\">{}</td><td data-label=\"Size (bytes)\" class=\"number\">{}</td>\
             <td data-label=\"BLAKE3 hash\"><code>{}</code></td></tr>",
            escape(&document.file_name),
            document.size,
            document.content_hash,
        );
    }
    body.push_str("</tbody></table></div>\n");
}

/// Renders every step of the delivery and its recipients in time order.
fn push_timeline(body: &mut String, tracking: &DeliveryTracking) {
    let summary = &tracking.summary;
    let mut steps: Vec<(Timestamp, String)> = vec![(summary.submitted_at, "Submitted".to_owned())];
    let mut add = |time: Option<Timestamp>, text: String| {
        if let Some(time) = time {
            steps.push((time, text));
        }
    };
    add(summary.postmarked_at, "Postmark issued".to_owned());
    add(
        summary.released_at,
        "Released: the documents became available".to_owned(),
    );
    for recipient in &tracking.recipients {
        let address = escape(&recipient.mailbox.address);
        add(
            recipient.first_attempt_at,
            format!("Link e-mail to {address} attempted"),
        );
        add(
            recipient.notified_at,
            format!("Link e-mail to {address} sent"),
        );
        if let Some(deferral) = &recipient.deferral {
            add(
                Some(deferral.at),
                format!(
                    "Link e-mail to {address} deferred: {}",
                    escape(&deferral.reason)
                ),
            );
        }
        if let Some(failure) = &recipient.failure {
            add(
                Some(failure.at),
                format!(
                    "Link e-mail to {address} failed: {}",
                    escape(&failure.reason)
                ),
            );
        }
        add(recipient.opened_at, format!("Opened by {address}"));
        for download in &recipient.downloads {
            add(
                Some(download.at),
                format!("Document downloaded by {address}"),
            );
        }
        add(
            recipient.receipt_sent_at,
            format!("Receipt about {address} sent to you"),
        );
    }
    add(summary.withdrawn_at, "Withdrawn".to_owned());
    add(summary.expired_at, "Expired".to_owned());
    add(summary.purged_at, "Documents purged".to_owned());
    steps.sort_by_key(|(time, _)| *time);

    body.push_str("<h2>Timeline</h2>\n<ol class=\"timeline\">\n");
    for (time, text) in steps {
        let _ = writeln!(body, "<li>{}<br>{text}</li>", time_element(time));
    }
    body.push_str(
        "</ol>\n<p class=\"hint\">Reload the page to see new steps in the timeline.</p>\n",
    );
}

fn fact(body: &mut String, term: &str, value: &str) {
    let _ = writeln!(body, "<dt>{term}</dt><dd>{value}</dd>");
}

fn yes_no(value: bool) -> &'static str {
    if value { "Yes" } else { "No" }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}
