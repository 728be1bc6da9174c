//! What the checked-in fixtures must contain: every event type, billing rows in several
//! months and for many billing codes, and no more than 2 MiB each.

use std::collections::{BTreeMap, BTreeSet};

use consign_schemas::{Event, EventKind};

use crate::common::{MAX_FIXTURE_BYTES, specs};

#[test]
fn every_event_type_present() {
    for spec in specs() {
        let recording = spec.load();
        let mut counts: BTreeMap<EventKind, u64> = BTreeMap::new();
        for event in recording.events() {
            *counts.entry(event.envelope.event.kind()).or_default() += 1;
        }

        for kind in EventKind::ALL {
            assert!(
                counts.contains_key(&kind),
                "{}.ledger has no {} event; regenerate it with another seed",
                spec.name,
                kind.name()
            );
        }
    }
}

#[test]
fn submissions_span_months_and_codes() {
    for spec in specs() {
        let recording = spec.load();
        let mut months = BTreeSet::new();
        let mut codes = BTreeSet::new();
        for event in recording.events() {
            if let Event::DeliverySubmitted(submitted) = &event.envelope.event {
                // Whole 30-day periods since the epoch stand in for months here.
                months.insert(event.envelope.time.as_micros() / (30 * 86_400_000_000));
                codes.insert(submitted.options.billing_code.clone());
            }
        }

        assert!(
            months.len() >= 3,
            "{}: submissions in {} periods",
            spec.name,
            months.len()
        );
        assert!(
            codes.len() >= 20,
            "{}: {} billing codes",
            spec.name,
            codes.len()
        );
        assert!(
            codes.contains(&None),
            "{}: every submission has a billing code",
            spec.name
        );
    }
}

#[test]
fn fixtures_stay_small() {
    for spec in specs() {
        let size = std::fs::metadata(spec.ledger_path()).unwrap().len();

        assert!(
            size <= MAX_FIXTURE_BYTES,
            "{}.ledger is {size} bytes, more than {MAX_FIXTURE_BYTES}",
            spec.name
        );
    }
}
