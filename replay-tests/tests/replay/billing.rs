//! `billing_matches_raw_count`: the billing view's usage rows against a count made
//! here from the fixture's raw records, without the view's code.

use std::collections::{BTreeMap, HashMap};

use consign_projections::billing::{self, Month, Usage, UsageQuery};
use consign_replay_tests::fixture;
use consign_schemas::events::Priority;
use consign_schemas::{AccountId, DocumentId, Envelope, Event, Timestamp};

use crate::common::{FixtureSpec, replay, specs};

/// A usage row's key: UTC month as `YYYY-MM`, sender account and billing code.
type RowKey = (String, AccountId, Option<String>);

/// Reads one counter of a usage row.
type Counter = fn(&Usage) -> u64;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Returns the UTC calendar month of `time` as `YYYY-MM`. The date is computed here
/// from 400-year Gregorian eras of 146,097 days, each starting on 1 March, so that the
/// count does not share the view's date library.
fn month_of(time: Timestamp) -> String {
    let days = time.as_micros().div_euclid(MICROS_PER_DAY);
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}")
}

/// Counts the usage of every submission in the fixture file of `spec`, decoding each
/// record's stored bytes on its own.
fn count_raw(spec: &FixtureSpec) -> BTreeMap<RowKey, Usage> {
    let path = spec.ledger_path();
    let bytes = std::fs::read(&path).unwrap();
    let parsed = fixture::parse(&path, &bytes).unwrap();

    let mut sizes: HashMap<DocumentId, u64> = HashMap::new();
    let mut rows: BTreeMap<RowKey, Usage> = BTreeMap::new();
    for record in &parsed.records {
        let envelope = Envelope::decode(&record.raw.bytes).unwrap();
        match &envelope.event {
            Event::DocumentUploaded(uploaded) => {
                sizes.insert(uploaded.document, uploaded.size);
            }
            Event::DeliverySubmitted(submitted) => {
                let options = &submitted.options;
                let key = (
                    month_of(envelope.time),
                    submitted.sender,
                    options.billing_code.clone(),
                );
                let usage = rows.entry(key).or_default();
                usage.deliveries += 1;
                usage.recipients += submitted.recipients.len() as u64;
                usage.documents += submitted.documents.len() as u64;
                for document in &submitted.documents {
                    usage.bytes += sizes.get(document).copied().unwrap_or(0);
                }
                match options.priority {
                    Priority::Normal => usage.normal_priority += 1,
                    Priority::High => usage.high_priority += 1,
                    Priority::Urgent => usage.urgent_priority += 1,
                }
                usage.postmarks += u64::from(options.postmark);
                usage.encrypted += u64::from(options.encrypt_at_rest);
                usage.password_protected += u64::from(options.access_password_hash.is_some());
            }
            _ => {}
        }
    }
    rows
}

/// Reads every usage row of the billing view after a replay of `spec`.
fn view_rows(spec: &FixtureSpec) -> BTreeMap<RowKey, Usage> {
    let replayed = replay(&spec.load());
    let every_month = UsageQuery {
        from: Month::new(-9999, 1).unwrap(),
        to: Month::new(9999, 12).unwrap(),
        billing_code: None,
    };
    billing::usage(&replayed.store, &every_month)
        .unwrap()
        .rows
        .into_iter()
        .map(|row| {
            (
                (row.month.to_string(), row.account, row.billing_code),
                row.usage,
            )
        })
        .collect()
}

/// Keeps one counter of every row.
fn counter(rows: &BTreeMap<RowKey, Usage>, field: Counter) -> BTreeMap<RowKey, u64> {
    rows.iter()
        .map(|(key, usage)| (key.clone(), field(usage)))
        .collect()
}

#[test]
fn billing_matches_raw_count() {
    let fields: [(&str, Counter); 10] = [
        ("deliveries", |usage| usage.deliveries),
        ("recipients", |usage| usage.recipients),
        ("documents", |usage| usage.documents),
        ("bytes", |usage| usage.bytes),
        ("normal_priority", |usage| usage.normal_priority),
        ("high_priority", |usage| usage.high_priority),
        ("urgent_priority", |usage| usage.urgent_priority),
        ("postmarks", |usage| usage.postmarks),
        ("encrypted", |usage| usage.encrypted),
        ("password_protected", |usage| usage.password_protected),
    ];
    for spec in specs() {
        let counted = count_raw(&spec);
        let viewed = view_rows(&spec);

        let counted_keys: Vec<&RowKey> = counted.keys().collect();
        let viewed_keys: Vec<&RowKey> = viewed.keys().collect();
        assert_eq!(viewed_keys, counted_keys, "{}: usage rows", spec.name);
        for (name, field) in fields {
            assert_eq!(
                counter(&viewed, field),
                counter(&counted, field),
                "{}: {name} per month, account and billing code",
                spec.name
            );
        }
    }
}

#[test]
fn raw_month_boundaries() {
    // 2026-03-31T23:59:59.999999Z and the next microsecond, a leap day and the day
    // after it, and the last microsecond before the Unix epoch.
    let last_march = Timestamp::from_micros(1_775_001_599_999_999);
    let first_april = Timestamp::from_micros(1_775_001_600_000_000);
    let leap_day = Timestamp::from_micros(1_709_208_000_000_000);
    let after_leap_day = Timestamp::from_micros(1_709_251_200_000_000);
    let before_epoch = Timestamp::from_micros(-1);

    assert_eq!(month_of(last_march), "2026-03");
    assert_eq!(month_of(first_april), "2026-04");
    assert_eq!(month_of(leap_day), "2024-02");
    assert_eq!(month_of(after_leap_day), "2024-03");
    assert_eq!(month_of(before_epoch), "1969-12");
}
