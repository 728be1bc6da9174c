//! Model tests over a generated ledger and over hand-built events.

use consign_ledger::workload::{self, WorkloadConfig};
use consign_ledger::{EmbeddedLedger, EmbeddedOptions, StoredEvent};
use consign_schemas::{ChainId, Event, EventKind, Position};

use super::*;

/// Generates a realistic ledger in a temporary directory and reads back every event.
fn generated_events(deliveries: u64, chains: u32) -> Vec<StoredEvent> {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        chains: Some(chains),
        sync: false,
        ..EmbeddedOptions::default()
    };
    let ledger = EmbeddedLedger::open(dir.path(), options).unwrap();
    let config = WorkloadConfig {
        deliveries,
        chains,
        ..WorkloadConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(workload::generate(&ledger, config, 16, |_| {}))
        .unwrap();

    let mut events = Vec::new();
    for chain in ledger.chains() {
        events.extend(ledger.read(chain, Position::new(0), usize::MAX).unwrap());
    }
    events
}

#[test]
fn generated_ledger_folds_consistently() {
    let events = generated_events(300, 3);
    let mut model = Model::new();
    for event in &events {
        assert!(model.apply(event).unwrap());
    }

    let submissions: Vec<_> = events
        .iter()
        .filter_map(|stored| match &stored.envelope.event {
            Event::DeliverySubmitted(submitted) => Some(submitted),
            _ => None,
        })
        .collect();
    assert_eq!(submissions.len(), 300);

    for submitted in submissions {
        let delivery = model
            .delivery(submitted.delivery)
            .expect("delivery in model");
        assert_eq!(delivery.recipients.len(), submitted.recipients.len());
        for entry in &submitted.recipients {
            let (found, recipient) = model.by_token(&entry.access_token_hash).unwrap();
            assert_eq!(found.id, submitted.delivery);
            assert_eq!(recipient.id, entry.recipient);
        }
        assert!(
            model
                .deliveries_of(submitted.sender)
                .any(|candidate| candidate.id == submitted.delivery)
        );
    }
}

#[test]
fn counts_match_the_raw_events() {
    let events = generated_events(200, 2);
    let mut model = Model::new();
    for event in &events {
        model.apply(event).unwrap();
    }
    let count = |kind: EventKind| {
        events
            .iter()
            .filter(|stored| stored.envelope.event.kind() == kind)
            .count()
    };

    let accounts = model.accounts().count();
    let released = model
        .deliveries
        .values()
        .filter(|delivery| delivery.released_at.is_some())
        .count();
    let withdrawn = model
        .deliveries
        .values()
        .filter(|delivery| delivery.withdrawn.is_some())
        .count();
    let opens: u32 = model
        .deliveries
        .values()
        .flat_map(|delivery| &delivery.recipients)
        .map(|recipient| recipient.opens)
        .sum();

    assert_eq!(accounts, count(EventKind::AccountOpened));
    assert_eq!(released, count(EventKind::DeliveryReleased));
    assert_eq!(withdrawn, count(EventKind::DeliveryWithdrawn));
    assert_eq!(opens as usize, count(EventKind::DeliveryOpened));
}

#[test]
fn replayed_events_change_nothing() {
    let events = generated_events(50, 1);
    let mut model = Model::new();
    for event in &events {
        model.apply(event).unwrap();
    }
    let next = model.next_position(ChainId::new(0));

    for event in &events {
        assert!(!model.apply(event).unwrap());
    }
    assert_eq!(model.next_position(ChainId::new(0)), next);
}

#[test]
fn gap_is_an_error() {
    let events = generated_events(5, 1);
    let mut model = Model::new();
    model.apply(&events[0]).unwrap();

    let error = model.apply(&events[2]).unwrap_err();
    assert_eq!(
        error,
        ModelError::Gap {
            chain: ChainId::new(0),
            position: Position::new(2),
            expected: Position::new(1),
        }
    );
}
