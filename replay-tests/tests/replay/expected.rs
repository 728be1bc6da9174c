//! `fixtures_replay_to_expected`: each fixture replayed through every view and compared
//! with its checked-in expected output. With `CONSIGN_UPDATE_FIXTURES=1` the test
//! rewrites the expected files instead.
//!
//! Besides the members that [`describe`] builds, an expected file has
//! `midpoint_views`: the view digests after the first half of each chain. The schedule
//! view is empty once every release and expiry has happened, so only this midpoint
//! shows its entries.

use consign_replay_tests::expected::{
    choose_deliveries, describe, describe_views, differences, listed_deliveries,
};
use consign_replay_tests::fixture::Recording;
use consign_schemas::DeliveryId;
use serde_json::{Value, json};

use crate::common::{FixtureSpec, UPDATE_VARIABLE, replay, specs, update_requested};

/// Members of an expected file, each compared on its own so that a failure names one.
const SECTIONS: [&str; 5] = [
    "event_counts",
    "views",
    "midpoint_views",
    "billing",
    "deliveries",
];

/// Maximum number of difference lines in a failure message. The message gives the
/// count of the rest.
const MAX_SHOWN: usize = 40;

/// Replays `recording` and writes its expected output, with the tracking record and
/// audit history of `deliveries`, to the expected file of `spec`.
pub fn write_expected(spec: &FixtureSpec, recording: &Recording, deliveries: &[DeliveryId]) {
    let value = replay_output(recording, deliveries);
    let mut text = serde_json::to_string_pretty(&value).unwrap();
    text.push('\n');
    std::fs::write(spec.expected_path(), text).unwrap();
}

/// Replays `recording` in full and up to the middle of each chain, and builds the
/// output that an expected file contains.
fn replay_output(recording: &Recording, deliveries: &[DeliveryId]) -> Value {
    let replayed = replay(recording);
    let mut output = describe(&replayed.store, recording, deliveries).unwrap();

    let midpoint = Recording {
        chains: recording
            .chains
            .iter()
            .map(|events| events[..events.len() / 2].to_vec())
            .collect(),
    };
    let halfway = replay(&midpoint);
    output["midpoint_views"] = describe_views(&halfway.store).unwrap();
    output
}

fn read_expected(spec: &FixtureSpec) -> Value {
    let path = spec.expected_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{} is not valid JSON: {error}", path.display()))
}

/// Builds the failure message of one differing section.
fn mismatch_message(spec: &FixtureSpec, section: &str, lines: &[String]) -> String {
    let mut message = format!(
        "replaying {}.ledger gives another `{section}` than {}.expected.json, in {} places:\n",
        spec.name,
        spec.name,
        lines.len()
    );
    for line in lines.iter().take(MAX_SHOWN) {
        message.push_str("  ");
        message.push_str(line);
        message.push('\n');
    }
    if lines.len() > MAX_SHOWN {
        message.push_str(&format!("  ... and {} more\n", lines.len() - MAX_SHOWN));
    }
    message.push_str(&format!(
        "If the change is intended, rerun with {UPDATE_VARIABLE}=1 to rewrite the expected \
         files, and review their diff."
    ));
    message
}

#[test]
fn fixtures_replay_to_expected() {
    for spec in specs() {
        let recording = spec.load();
        if update_requested() {
            write_expected(&spec, &recording, &choose_deliveries(&recording));
            eprintln!("rewrote {}", spec.expected_path().display());
            continue;
        }

        let expected = read_expected(&spec);
        let deliveries = listed_deliveries(&expected).unwrap();
        let actual = replay_output(&recording, &deliveries);

        assert!(
            deliveries.len() >= 5,
            "{}.expected.json pins only {} deliveries",
            spec.name,
            deliveries.len()
        );
        for section in SECTIONS {
            // Wrapping each side in an object puts the section name in every path.
            let lines = differences(
                &json!({ section: &expected[section] }),
                &json!({ section: &actual[section] }),
            );
            assert!(
                lines.is_empty(),
                "{}",
                mismatch_message(&spec, section, &lines)
            );
        }
        let members: Vec<&str> = expected
            .as_object()
            .map(|object| object.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut sections = SECTIONS.to_vec();
        sections.sort_unstable();
        assert_eq!(members, sections, "{}.expected.json members", spec.name);
    }
}
