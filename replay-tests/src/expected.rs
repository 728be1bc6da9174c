//! The expected output of a replay, as JSON: what the views contain after every event of
//! a fixture, in a form that reads well in a review and compares path by path.
//!
//! [`describe`] builds an object with these members:
//!
//! - `event_counts`: the number of events of each type in the fixture.
//! - `views`: each view's name, state digest, entry count and next position per chain.
//! - `billing`: every usage row of every month.
//! - `deliveries`: for a few chosen deliveries, the tracking record (summary and
//!   recipients) and the audit history (chain, position, type and hash of each event).
//!
//! [`differences`] lists where two such objects differ.

use std::collections::BTreeMap;

use consign_ledger::StoredEvent;
use consign_projections::billing::{Month, UsageQuery};
use consign_projections::{ALL_VIEWS, ProjectionError, ViewStore, audit, billing, tracking};
use consign_schemas::{DeliveryId, EventKind};
use serde_json::{Value, json};

use crate::fixture::Recording;

/// Event types whose deliveries [`choose_deliveries`] picks, one delivery each: every
/// ending, both kinds of bounce, a receipt, a refused visit and a scheduled release.
const CHOSEN_KINDS: [EventKind; 8] = [
    EventKind::DeliveryWithdrawn,
    EventKind::DeliveryExpired,
    EventKind::DocumentsPurged,
    EventKind::NotificationFailed,
    EventKind::NotificationDeferred,
    EventKind::ReceiptSent,
    EventKind::AccessDenied,
    EventKind::DeliveryReleased,
];

/// Maximum length of a value rendered in a difference line, in characters.
const MAX_RENDERED: usize = 160;

/// Builds the expected-output object of a store that has applied all of `recording`,
/// with the tracking record and audit history of each of `deliveries`.
///
/// # Errors
///
/// Read failures of the view store.
pub fn describe(
    store: &ViewStore,
    recording: &Recording,
    deliveries: &[DeliveryId],
) -> Result<Value, ProjectionError> {
    let mut event_counts: BTreeMap<&str, u64> = BTreeMap::new();
    for event in recording.events() {
        *event_counts
            .entry(event.envelope.event.kind().name())
            .or_default() += 1;
    }

    let every_month = UsageQuery {
        from: Month::new(-9999, 1)?,
        to: Month::new(9999, 12)?,
        billing_code: None,
    };
    let rows = billing::usage(store, &every_month)?.rows;

    let mut chosen = Vec::with_capacity(deliveries.len());
    for &delivery in deliveries {
        chosen.push(describe_delivery(store, delivery)?);
    }

    Ok(json!({
        "event_counts": event_counts,
        "views": describe_views(store)?,
        "billing": to_value(&rows),
        "deliveries": chosen,
    }))
}

/// Builds the list of every built-in view's name, state digest, entry count and next
/// position per chain.
///
/// # Errors
///
/// Read failures of the view store.
pub fn describe_views(store: &ViewStore) -> Result<Value, ProjectionError> {
    let mut views = Vec::new();
    for view in ALL_VIEWS {
        let digest = store.digest(view.name())?;
        let positions: Vec<u64> = digest.positions.values().map(|next| next.get()).collect();
        views.push(json!({
            "view": digest.view,
            "state": digest.state.to_hex(),
            "entries": digest.entries,
            "positions": positions,
        }));
    }
    Ok(Value::Array(views))
}

/// Builds the tracking record and the audit history of one delivery.
fn describe_delivery(store: &ViewStore, delivery: DeliveryId) -> Result<Value, ProjectionError> {
    let tracking = match tracking::delivery(store, delivery)? {
        None => Value::Null,
        Some(record) => json!({
            "summary": to_value(&record.summary),
            "recipients": to_value(&record.recipients),
        }),
    };
    let history: Vec<Value> = audit::history(store, delivery)?
        .into_iter()
        .map(|entry| {
            json!({
                "chain": entry.chain.get(),
                "position": entry.position.get(),
                "kind": entry.kind.name(),
                "hash": entry.hash.to_hex(),
            })
        })
        .collect();
    Ok(json!({
        "delivery": delivery.to_string(),
        "tracking": tracking,
        "audit": history,
    }))
}

fn to_value(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("view records have string keys and serialize to JSON")
}

/// Picks deliveries worth pinning in an expected file: the delivery of the first
/// withdrawal, expiry, purge, failed notification, deferred notification, receipt,
/// refused visit and release. The preferred chain changes from one type to the next,
/// so that several chains are covered, and each delivery is picked once.
pub fn choose_deliveries(recording: &Recording) -> Vec<DeliveryId> {
    let mut chosen: Vec<DeliveryId> = Vec::new();
    for (index, kind) in CHOSEN_KINDS.iter().enumerate() {
        let preferred = &recording.chains[index % recording.chains.len()];
        let delivery = first_delivery_with(preferred, *kind, &chosen).or_else(|| {
            recording
                .chains
                .iter()
                .find_map(|events| first_delivery_with(events, *kind, &chosen))
        });
        if let Some(delivery) = delivery {
            chosen.push(delivery);
        }
    }
    chosen
}

/// Returns the delivery of the first event of type `kind` in `events` whose delivery is
/// not in `excluded`.
fn first_delivery_with(
    events: &[StoredEvent],
    kind: EventKind,
    excluded: &[DeliveryId],
) -> Option<DeliveryId> {
    events
        .iter()
        .filter(|event| event.envelope.event.kind() == kind)
        .filter_map(|event| event.envelope.event.delivery())
        .find(|delivery| !excluded.contains(delivery))
}

/// Reads the ids of the deliveries listed in an expected-output object.
///
/// # Errors
///
/// A message naming the entry that has no valid `delivery` member.
pub fn listed_deliveries(expected: &Value) -> Result<Vec<DeliveryId>, String> {
    let Some(entries) = expected.get("deliveries").and_then(Value::as_array) else {
        return Err("the expected output has no `deliveries` array".to_owned());
    };
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            entry
                .get("delivery")
                .and_then(Value::as_str)
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| format!("deliveries[{index}] has no valid `delivery` id"))
        })
        .collect()
}

/// Lists every place where `actual` differs from `expected`, one line each, as
/// `path: expected X, got Y`. Arrays are compared item by item and objects member by
/// member. An empty list means the values are equal.
pub fn differences(expected: &Value, actual: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    compare("", expected, actual, &mut lines);
    lines
}

fn compare(path: &str, expected: &Value, actual: &Value, lines: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, expected_member) in expected {
                let member_path = join(path, key);
                match actual.get(key) {
                    Some(actual_member) => {
                        compare(&member_path, expected_member, actual_member, lines);
                    }
                    None => lines.push(format!(
                        "{member_path}: expected {}, but the member is missing",
                        render(expected_member)
                    )),
                }
            }
            for (key, actual_member) in actual {
                if !expected.contains_key(key) {
                    lines.push(format!(
                        "{}: unexpected member {}",
                        join(path, key),
                        render(actual_member)
                    ));
                }
            }
        }
        (Value::Array(expected), Value::Array(actual)) => {
            for (index, (expected_item, actual_item)) in expected.iter().zip(actual).enumerate() {
                compare(
                    &format!("{path}[{index}]"),
                    expected_item,
                    actual_item,
                    lines,
                );
            }
            if expected.len() != actual.len() {
                let shorter = expected.len().min(actual.len());
                let (first_extra, label) = if expected.len() > actual.len() {
                    (&expected[shorter], "missing")
                } else {
                    (&actual[shorter], "unexpected")
                };
                lines.push(format!(
                    "{}: expected {} items, got {}; first {label} item: {}",
                    display_path(path),
                    expected.len(),
                    actual.len(),
                    render(first_extra)
                ));
            }
        }
        _ if expected != actual => lines.push(format!(
            "{}: expected {}, got {}",
            display_path(path),
            render(expected),
            render(actual)
        )),
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "(root)" } else { path }
}

/// Renders a value as compact JSON, shortened to [`MAX_RENDERED`] characters.
fn render(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= MAX_RENDERED {
        return text;
    }
    let shortened: String = text.chars().take(MAX_RENDERED).collect();
    format!("{shortened}...")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_have_no_differences() {
        let value = json!({"a": [1, 2, {"b": "c"}]});

        assert_eq!(differences(&value, &value.clone()), Vec::<String>::new());
    }

    #[test]
    fn differences_name_each_path() {
        let expected = json!({"views": [{"state": "aa", "entries": 3}], "gone": 1});
        let actual = json!({"views": [{"state": "bb", "entries": 3}], "new": 2});

        let lines = differences(&expected, &actual);

        assert_eq!(
            lines,
            [
                "gone: expected 1, but the member is missing",
                "views[0].state: expected \"aa\", got \"bb\"",
                "new: unexpected member 2",
            ]
        );
    }

    #[test]
    fn differences_report_array_lengths() {
        let lines = differences(&json!([1, 2, 3]), &json!([1, 2]));

        assert_eq!(
            lines,
            ["(root): expected 3 items, got 2; first missing item: 3"]
        );
    }

    #[test]
    fn long_values_are_shortened() {
        let long = "x".repeat(500);

        let lines = differences(&json!(long), &json!("y"));

        assert!(lines[0].len() < 250, "{}", lines[0]);
    }
}
