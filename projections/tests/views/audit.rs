//! Audit: each delivery's history against the raw events, and the search indexes.

use std::collections::{BTreeSet, HashMap};

use consign_projections::audit::{
    AuditEntry, AuditSearch, SearchCursor, history, search, search_page,
};
use consign_projections::{ALL_VIEWS, catch_up};
use consign_schemas::{DeliveryId, Event, Timestamp};

use crate::common::{all_events, generated_ledger, open_store};

#[test]
fn history_lists_every_event_of_delivery() {
    let fixture = generated_ledger(150, 2, 30);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), &fixture.ledger);
    catch_up(&fixture.ledger, &store, &ALL_VIEWS, |_| {}).unwrap();

    let events = all_events(&fixture.ledger);
    let owner: HashMap<_, _> = events
        .iter()
        .filter_map(|stored| match &stored.envelope.event {
            Event::DeliverySubmitted(submitted) => Some(
                submitted
                    .documents
                    .iter()
                    .map(move |document| (*document, submitted.delivery)),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    let mut expected: HashMap<DeliveryId, Vec<AuditEntry>> = HashMap::new();
    for stored in &events {
        let envelope = &stored.envelope;
        let delivery = match &envelope.event {
            Event::DocumentUploaded(uploaded) => owner.get(&uploaded.document).copied(),
            event => event.delivery(),
        };
        let Some(delivery) = delivery else {
            continue;
        };
        expected.entry(delivery).or_default().push(AuditEntry {
            chain: envelope.chain,
            position: envelope.position,
            hash: stored.hash,
            previous: envelope.previous,
            time: envelope.time,
            kind: envelope.event.kind(),
        });
    }

    assert_eq!(expected.len(), 150);
    for (delivery, entries) in &expected {
        assert_eq!(&history(&store, *delivery).unwrap(), entries, "{delivery}");
    }
    assert!(
        history(&store, DeliveryId::from_bytes([9; 16]))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn search_indexes_find_deliveries() {
    let fixture = generated_ledger(150, 2, 31);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), &fixture.ledger);
    catch_up(&fixture.ledger, &store, &ALL_VIEWS, |_| {}).unwrap();
    let events = all_events(&fixture.ledger);
    let hashes: HashMap<_, _> = events
        .iter()
        .filter_map(|stored| match &stored.envelope.event {
            Event::DocumentUploaded(uploaded) => Some((uploaded.document, uploaded.content_hash)),
            _ => None,
        })
        .collect();
    let mut submissions: Vec<_> = events
        .iter()
        .filter_map(|stored| match &stored.envelope.event {
            Event::DeliverySubmitted(submitted) => Some((stored.envelope.time, submitted)),
            _ => None,
        })
        .collect();
    submissions.sort_by_key(|(time, submitted)| (*time, submitted.delivery));
    let (_, sample) = submissions[submissions.len() / 2];
    let found = |query: &AuditSearch| -> BTreeSet<DeliveryId> {
        search(&store, query, 10_000).unwrap().into_iter().collect()
    };
    let matching =
        |keep: &dyn Fn(Timestamp, &consign_schemas::events::DeliverySubmitted) -> bool| {
            submissions
                .iter()
                .filter(|(time, submitted)| keep(*time, submitted))
                .map(|(_, submitted)| submitted.delivery)
                .collect::<BTreeSet<_>>()
        };

    let by_sender = matching(&|_, submitted| submitted.sender == sample.sender);
    assert_eq!(found(&AuditSearch::Sender(sample.sender)), by_sender);

    let address = &sample.recipients[0].mailbox.address;
    let by_address = matching(&|_, submitted| {
        submitted
            .recipients
            .iter()
            .any(|recipient| recipient.mailbox.address.to_lowercase() == address.to_lowercase())
    });
    assert!(by_address.contains(&sample.delivery));
    assert_eq!(
        found(&AuditSearch::RecipientAddress(address.to_uppercase())),
        by_address
    );

    let hash = hashes[&sample.documents[0]];
    let by_hash = matching(&|_, submitted| submitted.documents.iter().any(|d| hashes[d] == hash));
    assert_eq!(found(&AuditSearch::DocumentHash(hash)), by_hash);

    let from = submissions[10].0;
    let before = submissions[40].0;
    let in_range = matching(&|time, _| time >= from && time < before);
    let range = AuditSearch::SubmittedBetween { from, before };
    assert!(!in_range.is_empty());
    assert_eq!(found(&range), in_range);
    assert_eq!(search(&store, &range, 3).unwrap().len(), 3);

    // Pages of 3 cover every match of each search once, and only the last page has
    // no cursor.
    for query in [
        AuditSearch::Sender(sample.sender),
        AuditSearch::DocumentHash(hash),
        range.clone(),
    ] {
        let mut paged = Vec::new();
        let mut cursor = None;
        loop {
            let page = search_page(&store, &query, cursor.as_ref(), 3).unwrap();
            assert!(page.deliveries.len() <= 3);
            paged.extend(page.deliveries.iter().copied());
            match page.next {
                Some(next) => {
                    assert_eq!(page.deliveries.len(), 3, "{query:?}");
                    // The text form goes through a URL and back.
                    cursor = Some(next.to_string().parse::<SearchCursor>().unwrap());
                }
                None => break,
            }
        }
        let distinct: BTreeSet<_> = paged.iter().copied().collect();
        assert_eq!(distinct.len(), paged.len(), "{query:?} repeats a delivery");
        assert_eq!(distinct, found(&query), "{query:?}");
    }

    // A cursor of one search is rejected by a search with another criterion.
    let first = search_page(&store, &range, None, 1).unwrap();
    let cursor = first.next.expect("the range has more than one match");
    let error = search_page(
        &store,
        &AuditSearch::Sender(sample.sender),
        Some(&cursor),
        3,
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            consign_projections::ProjectionError::InvalidCursor { .. }
        ),
        "{error:?}"
    );
    assert!("not hex".parse::<SearchCursor>().is_err());
}
