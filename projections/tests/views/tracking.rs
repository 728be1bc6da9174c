//! Tracking: statuses and step times against the in-memory model, and the sender's
//! list with filters and paging.

use std::collections::{BTreeMap, BTreeSet};

use consign_projections::model::{Model, NotificationStatus};
use consign_projections::tracking::{
    self, DeliveryFilter, DeliverySummary, ListCursor, TrackingStatus, list_deliveries,
};
use consign_projections::{ALL_VIEWS, ViewStore, catch_up};
use consign_schemas::{AccountId, Event, Timestamp};

use crate::common::{Fixture, all_events, generated_ledger, open_store};

fn built(deliveries: u64, seed: u64) -> (Fixture, tempfile::TempDir, ViewStore, Model) {
    let fixture = generated_ledger(deliveries, 2, seed);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), &fixture.ledger);
    catch_up(&fixture.ledger, &store, &ALL_VIEWS, |_| {}).unwrap();
    let mut model = Model::new();
    for event in all_events(&fixture.ledger) {
        model.apply(&event).unwrap();
    }
    (fixture, dir, store, model)
}

#[test]
fn steps_match_model() {
    let (fixture, _dir, store, model) = built(200, 20);
    let mut seen = BTreeSet::new();

    for stored in all_events(&fixture.ledger) {
        let Event::DeliverySubmitted(submitted) = &stored.envelope.event else {
            continue;
        };
        let expected = model.delivery(submitted.delivery).unwrap();
        let actual = tracking::delivery(&store, submitted.delivery)
            .unwrap()
            .unwrap();
        let summary = &actual.summary;
        assert_eq!(summary.submitted_at, stored.envelope.time);
        assert_eq!(summary.sender, expected.sender);
        assert_eq!(summary.released_at, expected.released_at);
        assert_eq!(summary.expired_at, expected.expired_at);
        assert_eq!(
            summary.withdrawn_at,
            expected.withdrawn.as_ref().map(|w| w.at)
        );
        assert_eq!(actual.recipients.len(), expected.recipients.len());

        for ((record, listed), model_recipient) in actual
            .recipients
            .iter()
            .zip(&summary.recipients)
            .zip(&expected.recipients)
        {
            assert_eq!(record.recipient, model_recipient.id);
            assert_eq!(listed.recipient, model_recipient.id);
            assert_eq!(record.opened_at, model_recipient.first_opened_at);
            assert_eq!(record.opens, model_recipient.opens);
            assert_eq!(record.denials, model_recipient.denials);
            assert_eq!(record.receipt_sent_at, model_recipient.receipt_sent_at);
            let downloads: BTreeMap<_, _> = record
                .downloads
                .iter()
                .map(|d| (d.document, d.at))
                .collect();
            assert_eq!(downloads, model_recipient.downloads);
            let model_status = model_recipient.consignment.as_ref().map(|n| &n.status);
            match model_status {
                Some(NotificationStatus::Sent { at }) => assert_eq!(record.notified_at, Some(*at)),
                Some(NotificationStatus::Failed { .. }) => assert!(record.failure.is_some()),
                Some(NotificationStatus::Deferred { retry_at, .. }) => {
                    assert_eq!(
                        record.deferral.as_ref().map(|d| d.retry_at),
                        Some(*retry_at)
                    )
                }
                Some(NotificationStatus::Attempted) | None => assert!(record.notified_at.is_none()),
            }
            assert_eq!(
                listed.status,
                expected_status(summary, record, model_status)
            );
            seen.insert(listed.status);
        }
    }
    for status in [
        TrackingStatus::Notified,
        TrackingStatus::Opened,
        TrackingStatus::Downloaded,
        TrackingStatus::Expired,
        TrackingStatus::Withdrawn,
    ] {
        assert!(
            seen.contains(&status),
            "no recipient ends {status:?}: {seen:?}"
        );
    }
}

/// Derives a recipient's status from its record, by the documented precedence.
fn expected_status(
    summary: &DeliverySummary,
    record: &tracking::RecipientTracking,
    notification: Option<&NotificationStatus>,
) -> TrackingStatus {
    if summary.withdrawn_at.is_some() {
        TrackingStatus::Withdrawn
    } else if summary.expired_at.is_some() {
        TrackingStatus::Expired
    } else if record.receipt_sent_at.is_some() {
        TrackingStatus::ReceiptSent
    } else if !record.downloads.is_empty() {
        TrackingStatus::Downloaded
    } else if record.opened_at.is_some() {
        TrackingStatus::Opened
    } else {
        match notification {
            Some(NotificationStatus::Sent { .. }) => TrackingStatus::Notified,
            Some(NotificationStatus::Failed { .. }) => TrackingStatus::Failed,
            Some(NotificationStatus::Deferred { .. }) => TrackingStatus::Deferred,
            _ if summary.released_at.is_some() => TrackingStatus::Released,
            _ => TrackingStatus::Scheduled,
        }
    }
}

/// Lists every page of `filter` for `sender`, `limit` at a time.
fn all_pages(
    store: &ViewStore,
    sender: AccountId,
    filter: &DeliveryFilter,
    limit: usize,
) -> Vec<DeliverySummary> {
    let mut listed = Vec::new();
    let mut cursor: Option<ListCursor> = None;
    loop {
        let page = list_deliveries(store, sender, filter, limit, cursor.as_ref()).unwrap();
        assert!(page.deliveries.len() <= limit);
        listed.extend(page.deliveries);
        match page.next_cursor {
            // The cursor goes through its text form, as it would through a URL.
            Some(next) => cursor = Some(next.to_string().parse().unwrap()),
            None => return listed,
        }
    }
}

#[test]
fn list_pages_and_filters() {
    let (_fixture, _dir, store, model) = built(200, 21);
    let sender = model
        .accounts()
        .filter(|account| model.deliveries_of(account.id).next().is_some())
        .max_by_key(|account| (model.deliveries_of(account.id).count(), account.id))
        .unwrap()
        .id;
    let mut all: Vec<_> = model.deliveries_of(sender).collect();
    all.sort_by_key(|delivery| std::cmp::Reverse((delivery.submitted.time, delivery.id)));
    let ids =
        |summaries: &[DeliverySummary]| summaries.iter().map(|s| s.delivery).collect::<Vec<_>>();

    let everything = all_pages(&store, sender, &DeliveryFilter::default(), 7);
    assert_eq!(
        ids(&everything),
        all.iter().map(|d| d.id).collect::<Vec<_>>()
    );

    let code = all
        .iter()
        .find_map(|d| d.options.billing_code.clone())
        .unwrap();
    let by_code = DeliveryFilter {
        billing_code: Some(code.clone()),
        ..DeliveryFilter::default()
    };
    let expected: Vec<_> = all
        .iter()
        .filter(|d| d.options.billing_code.as_ref() == Some(&code))
        .map(|d| d.id)
        .collect();
    assert_eq!(ids(&all_pages(&store, sender, &by_code, 3)), expected);

    let withdrawn = DeliveryFilter {
        status: Some(TrackingStatus::Withdrawn),
        ..DeliveryFilter::default()
    };
    let expected: Vec<_> = all
        .iter()
        .filter(|d| d.withdrawn.is_some())
        .map(|d| d.id)
        .collect();
    assert_eq!(ids(&all_pages(&store, sender, &withdrawn, 5)), expected);

    let middle = all[all.len() / 2].submitted.time;
    let later = all[all.len() / 4].submitted.time;
    let range = DeliveryFilter {
        submitted_from: Some(middle),
        submitted_before: Some(later),
        ..DeliveryFilter::default()
    };
    let in_range = |time: Timestamp| time >= middle && time < later;
    let expected: Vec<_> = all
        .iter()
        .filter(|d| in_range(d.submitted.time))
        .map(|d| d.id)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(ids(&all_pages(&store, sender, &range, 4)), expected);

    let address = all[0].recipients[0].mailbox.address.clone();
    let by_address = DeliveryFilter {
        recipient_address: Some(address.to_uppercase()),
        ..DeliveryFilter::default()
    };
    let expected: Vec<_> = all
        .iter()
        .filter(|d| {
            d.recipients
                .iter()
                .any(|r| r.mailbox.address.eq_ignore_ascii_case(&address))
        })
        .map(|d| d.id)
        .collect();
    assert_eq!(ids(&all_pages(&store, sender, &by_address, 50)), expected);
}

#[test]
fn invalid_cursor_rejected() {
    for text in ["", "zz", &"0".repeat(46)] {
        assert!(text.parse::<ListCursor>().is_err(), "{text:?}");
    }
}

#[test]
fn unknown_delivery_is_none() {
    let (_fixture, _dir, store, _model) = built(5, 22);

    let found =
        tracking::delivery(&store, consign_schemas::DeliveryId::from_bytes([7; 16])).unwrap();

    assert!(found.is_none());
}

#[test]
fn as_of_matches_view_and_prefixes() {
    let (fixture, _dir, store, _model) = built(60, 21);
    let events = all_events(&fixture.ledger);
    let mut compared = 0;

    for stored in &events {
        let Event::DeliverySubmitted(submitted) = &stored.envelope.event else {
            continue;
        };
        let delivery = submitted.delivery;
        let own: Vec<_> = events
            .iter()
            .filter(|event| event.envelope.event.delivery() == Some(delivery))
            .collect();

        // All of a delivery's events give what the caught-up view stores.
        let folded = tracking::delivery_as_of(own.iter().copied(), delivery)
            .unwrap()
            .unwrap();
        let stored_view = tracking::delivery(&store, delivery).unwrap().unwrap();
        assert_eq!(folded, stored_view, "delivery {delivery}");

        // The submission alone gives a delivery with no step after the submission.
        let first = tracking::delivery_as_of(own.iter().copied().take(1), delivery)
            .unwrap()
            .unwrap();
        assert_eq!(first.summary.submitted_at, stored.envelope.time);
        assert_eq!(first.summary.released_at, None);
        assert!(
            first
                .recipients
                .iter()
                .all(|recipient| recipient.opened_at.is_none())
        );
        assert!(
            first
                .recipients
                .iter()
                .all(|recipient| recipient.downloads.is_empty())
        );

        // Events without the submission describe no delivery.
        let without = tracking::delivery_as_of(own.iter().copied().skip(1), delivery).unwrap();
        assert_eq!(without, None);
        compared += 1;
    }
    assert!(compared >= 60, "{compared} deliveries compared");
}
