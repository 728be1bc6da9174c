//! Billing: totals against an independent count, reports as of earlier positions, and
//! the exports.

use std::collections::{BTreeMap, HashMap};

use consign_projections::billing::{
    self, Month, RateTable, Usage, UsageQuery, billing_as_of, write_csv, write_json,
};
use consign_projections::{ALL_VIEWS, CatchUpOptions, Positions, catch_up, catch_up_with};
use consign_schemas::events::Priority;
use consign_schemas::{AccountId, Event, Position};

use crate::common::{all_events, generated_ledger, open_store};

fn every_month() -> UsageQuery {
    UsageQuery {
        from: Month::new(2000, 1).unwrap(),
        to: Month::new(2100, 12).unwrap(),
        billing_code: None,
    }
}

/// Formats a sequencer time's UTC month as `YYYY-MM`, apart from the crate's `Month`.
fn month_text(micros: i64) -> String {
    let time = jiff::Timestamp::from_microsecond(micros).unwrap();
    time.strftime("%Y-%m").to_string()
}

#[test]
fn totals_match_raw_events() {
    let fixture = generated_ledger(300, 2, 5);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), &fixture.ledger);
    catch_up(&fixture.ledger, &store, &ALL_VIEWS, |_| {}).unwrap();

    let events = all_events(&fixture.ledger);
    let sizes: HashMap<_, _> = events
        .iter()
        .filter_map(|stored| match &stored.envelope.event {
            Event::DocumentUploaded(uploaded) => Some((uploaded.document, uploaded.size)),
            _ => None,
        })
        .collect();
    let mut expected: BTreeMap<(String, AccountId, Option<String>), Usage> = BTreeMap::new();
    for stored in &events {
        let Event::DeliverySubmitted(submitted) = &stored.envelope.event else {
            continue;
        };
        let options = &submitted.options;
        let row_key = (
            month_text(stored.envelope.time.as_micros()),
            submitted.sender,
            options.billing_code.clone(),
        );
        let usage = expected.entry(row_key).or_default();
        usage.deliveries += 1;
        usage.recipients += submitted.recipients.len() as u64;
        usage.documents += submitted.documents.len() as u64;
        usage.bytes += submitted.documents.iter().map(|id| sizes[id]).sum::<u64>();
        match options.priority {
            Priority::Normal => usage.normal_priority += 1,
            Priority::High => usage.high_priority += 1,
            Priority::Urgent => usage.urgent_priority += 1,
        }
        usage.postmarks += u64::from(options.postmark);
        usage.encrypted += u64::from(options.encrypt_at_rest);
        usage.password_protected += u64::from(options.access_password_hash.is_some());
    }

    let report = billing::usage(&store, &every_month()).unwrap();
    let actual: BTreeMap<_, _> = report
        .rows
        .iter()
        .map(|row| {
            let row_key = (row.month.to_string(), row.account, row.billing_code.clone());
            (row_key, row.usage)
        })
        .collect();

    let months: std::collections::BTreeSet<_> = expected.keys().map(|key| &key.0).collect();
    assert!(
        months.len() >= 2,
        "the fixture spans one month only: {months:?}"
    );
    assert_eq!(actual.len(), report.rows.len(), "duplicate rows");
    assert_eq!(actual, expected);
    let deliveries: u64 = report.rows.iter().map(|row| row.usage.deliveries).sum();
    assert_eq!(deliveries, 300);
}

#[test]
fn query_filters_months_and_code() {
    let fixture = generated_ledger(200, 1, 6);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), &fixture.ledger);
    catch_up(&fixture.ledger, &store, &ALL_VIEWS, |_| {}).unwrap();
    let all = billing::usage(&store, &every_month()).unwrap().rows;
    let first_month = all.first().unwrap().month;
    let code = all
        .iter()
        .find_map(|row| row.billing_code.clone())
        .expect("some delivery has a billing code");

    let one_month = UsageQuery {
        from: first_month,
        to: first_month,
        billing_code: None,
    };
    let one_code = UsageQuery {
        billing_code: Some(code.clone()),
        ..every_month()
    };
    let reversed = UsageQuery {
        from: Month::new(2030, 1).unwrap(),
        to: Month::new(2020, 1).unwrap(),
        billing_code: None,
    };
    let month_rows = billing::usage(&store, &one_month).unwrap().rows;
    let code_rows = billing::usage(&store, &one_code).unwrap().rows;

    let expected_month: Vec<_> = all
        .iter()
        .filter(|row| row.month == first_month)
        .cloned()
        .collect();
    let expected_code: Vec<_> = all
        .iter()
        .filter(|row| row.billing_code.as_ref() == Some(&code))
        .cloned()
        .collect();
    assert!(month_rows.len() < all.len());
    assert_eq!(month_rows, expected_month);
    assert_eq!(code_rows, expected_code);
    assert!(billing::usage(&store, &reversed).unwrap().rows.is_empty());
}

#[test]
fn as_of_equals_live_at_same_positions() {
    let fixture = generated_ledger(250, 2, 7);
    let ledger = &fixture.ledger;
    let earlier: Positions = ledger
        .chains()
        .map(|chain| {
            let head = ledger.next_position(chain).unwrap();
            // Submissions come early in a generated ledger, so an early prefix is needed
            // to leave some out.
            (chain, Position::new(head.get() / 8))
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), ledger);
    let options = CatchUpOptions {
        until: Some(earlier.clone()),
        ..CatchUpOptions::default()
    };
    catch_up_with(ledger, &store, &ALL_VIEWS, &options, |_| {}).unwrap();

    let live_then = billing::usage(&store, &every_month()).unwrap();
    let as_of_then = billing_as_of(ledger, &earlier, &every_month()).unwrap();
    catch_up(ledger, &store, &ALL_VIEWS, |_| {}).unwrap();
    let live_now = billing::usage(&store, &every_month()).unwrap();
    let heads = live_now.positions.clone();
    let as_of_now = billing_as_of(ledger, &heads, &every_month()).unwrap();
    let as_of_then_again = billing_as_of(ledger, &earlier, &every_month()).unwrap();

    assert_eq!(live_then.positions, earlier);
    assert_eq!(as_of_then, live_then);
    assert_eq!(as_of_now, live_now);
    let deliveries =
        |rows: &[billing::UsageRow]| rows.iter().map(|row| row.usage.deliveries).sum::<u64>();
    assert!(deliveries(&live_then.rows) > 0);
    assert!(deliveries(&live_then.rows) < deliveries(&live_now.rows));
    assert_eq!(as_of_then_again, as_of_then);
}

#[test]
fn as_of_rejects_position_past_head() {
    let fixture = generated_ledger(5, 1, 8);
    let chain = consign_schemas::ChainId::new(0);
    let head = fixture.ledger.next_position(chain).unwrap();
    let past: Positions = [(chain, head.next())].into();

    let error = billing_as_of(&fixture.ledger, &past, &every_month()).unwrap_err();

    assert!(
        matches!(error, consign_projections::ProjectionError::PastHead { .. }),
        "{error}"
    );
}

fn rates() -> RateTable {
    RateTable {
        per_delivery: 40,
        per_recipient: 5,
        per_gib: 300,
        per_normal_priority: 0,
        per_high_priority: 20,
        per_urgent_priority: 80,
        per_postmark: 25,
    }
}

#[test]
fn csv_export_states_positions_and_amounts() {
    let fixture = generated_ledger(60, 2, 9);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), &fixture.ledger);
    catch_up(&fixture.ledger, &store, &ALL_VIEWS, |_| {}).unwrap();
    let report = billing::usage(&store, &every_month()).unwrap();

    let mut bytes = Vec::new();
    write_csv(&report, Some(&rates()), &mut bytes).unwrap();
    let text = String::from_utf8(bytes).unwrap();

    let first_line = text.lines().next().unwrap();
    let stated: Vec<String> = report
        .positions
        .iter()
        .map(|(chain, position)| format!("{chain}:{position}"))
        .collect();
    assert_eq!(
        first_line,
        format!(
            "# ledger positions (chain:next position): {}",
            stated.join(" ")
        )
    );
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "month");
    assert_eq!(&header[header.len() - 1], "total_cents");
    let records: Vec<_> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), report.rows.len());
    for (record, row) in records.iter().zip(&report.rows) {
        assert_eq!(&record[0], row.month.to_string());
        assert_eq!(&record[1], row.account.to_string());
        assert_eq!(&record[2], row.billing_code.as_deref().unwrap_or(""));
        assert_eq!(record[3].parse::<u64>().unwrap(), row.usage.deliveries);
        assert_eq!(record[6].parse::<u64>().unwrap(), row.usage.bytes);
        let total: u64 = record[header.len() - 1].parse().unwrap();
        assert_eq!(total, rates().price(&row.usage).total);
    }
}

#[test]
fn json_export_states_positions_and_amounts() {
    let fixture = generated_ledger(60, 2, 10);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), &fixture.ledger);
    catch_up(&fixture.ledger, &store, &ALL_VIEWS, |_| {}).unwrap();
    let report = billing::usage(&store, &every_month()).unwrap();

    let mut with_rates = Vec::new();
    write_json(&report, Some(&rates()), &mut with_rates).unwrap();
    let mut without_rates = Vec::new();
    write_json(&report, None, &mut without_rates).unwrap();
    let priced: serde_json::Value = serde_json::from_slice(&with_rates).unwrap();
    let unpriced: serde_json::Value = serde_json::from_slice(&without_rates).unwrap();

    let positions = priced["ledger_positions"].as_array().unwrap();
    assert_eq!(positions.len(), report.positions.len());
    for (stated, (chain, position)) in positions.iter().zip(&report.positions) {
        assert_eq!(stated["chain"], chain.get());
        assert_eq!(stated["next_position"], position.get());
    }
    let rows = priced["rows"].as_array().unwrap();
    assert_eq!(rows.len(), report.rows.len());
    for (json, row) in rows.iter().zip(&report.rows) {
        assert_eq!(json["month"], row.month.to_string());
        assert_eq!(json["usage"]["recipients"], row.usage.recipients);
        assert_eq!(json["amounts"]["total"], rates().price(&row.usage).total);
    }
    assert_eq!(priced["rates"]["per_gib"], 300);
    assert!(unpriced["rates"].is_null());
    assert!(unpriced["rows"][0]["amounts"].is_null());
}
