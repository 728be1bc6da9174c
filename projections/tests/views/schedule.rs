//! Schedule: the due list against the in-memory model's due releases and expiries.

use std::collections::BTreeSet;

use consign_projections::model::Model;
use consign_projections::schedule::{DueKind, due_at_or_before, next_due_after};
use consign_projections::{ALL_VIEWS, CatchUpOptions, Positions, catch_up_with};
use consign_schemas::{Event, Position, Timestamp};

use crate::common::{all_events, generated_ledger, open_store};

#[test]
fn due_list_matches_model() {
    let fixture = generated_ledger(250, 2, 40);
    let ledger = &fixture.ledger;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), ledger);
    let events = all_events(ledger);

    // Check halfway through each chain and at the end, when fewer entries are due.
    let halfway: Positions = ledger
        .chains()
        .map(|chain| {
            (
                chain,
                Position::new(ledger.next_position(chain).unwrap().get() / 2),
            )
        })
        .collect();
    for until in [Some(halfway), None] {
        let options = CatchUpOptions {
            until: until.clone(),
            ..CatchUpOptions::default()
        };
        catch_up_with(ledger, &store, &ALL_VIEWS, &options, |_| {}).unwrap();
        let mut model = Model::new();
        for event in &events {
            let applied_position = until.as_ref().map(|until| until[&event.chain()]);
            if applied_position.is_none_or(|end| event.position() < end) {
                model.apply(event).unwrap();
            }
        }

        let mut instants: BTreeSet<Timestamp> = events
            .iter()
            .filter_map(|stored| match &stored.envelope.event {
                Event::DeliverySubmitted(submitted) => Some(submitted),
                _ => None,
            })
            .flat_map(|submitted| {
                let options = &submitted.options;
                [&options.deliver_at, &options.expires_at]
                    .into_iter()
                    .flatten()
                    .map(|zoned| zoned.instant)
            })
            .collect();
        assert!(instants.len() > 20);
        let extra: Vec<_> = instants
            .iter()
            .map(|instant| Timestamp::from_micros(instant.as_micros() - 1))
            .collect();
        instants.extend(extra);
        instants.insert(Timestamp::from_micros(0));

        for &now in &instants {
            let due = due_at_or_before(&store, now, usize::MAX).unwrap();
            let releases: BTreeSet<_> = due
                .iter()
                .filter(|entry| entry.kind == DueKind::Release)
                .map(|entry| entry.delivery)
                .collect();
            let expiries: BTreeSet<_> = due
                .iter()
                .filter(|entry| entry.kind == DueKind::Expiry)
                .map(|entry| entry.delivery)
                .collect();

            assert!(due.windows(2).all(|pair| pair[0].at <= pair[1].at));
            assert!(due.iter().all(|entry| entry.at <= now));
            assert_eq!(
                releases,
                model.due_releases(now).into_iter().collect(),
                "at {now:?}"
            );
            assert_eq!(
                expiries,
                model.due_expiries(now).into_iter().collect(),
                "at {now:?}"
            );
            let next = next_due_after(&store, now).unwrap().map(|entry| entry.at);
            assert_eq!(next, model.next_due_after(now), "after {now:?}");
        }
    }
}

#[test]
fn due_list_respects_limit() {
    let fixture = generated_ledger(100, 1, 41);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), &fixture.ledger);
    // Halfway, many releases and expiries are still pending.
    let chain = consign_schemas::ChainId::new(0);
    let head = fixture.ledger.next_position(chain).unwrap();
    let options = CatchUpOptions {
        until: Some([(chain, Position::new(head.get() / 2))].into()),
        ..CatchUpOptions::default()
    };
    catch_up_with(&fixture.ledger, &store, &ALL_VIEWS, &options, |_| {}).unwrap();
    let far = Timestamp::from_micros(i64::MAX);

    let all = due_at_or_before(&store, far, usize::MAX).unwrap();
    let first_two = due_at_or_before(&store, far, 2).unwrap();

    assert!(all.len() > 2);
    assert_eq!(first_two, all[..2]);
    assert_eq!(next_due_after(&store, far).unwrap(), None);
}
