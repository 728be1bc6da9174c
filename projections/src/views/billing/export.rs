//! Billing exports in CSV and JSON. Each states the ledger positions its rows reflect, so
//! [`billing_as_of`](super::billing_as_of) can reproduce it later.

use std::io::Write;

use consign_schemas::AccountId;
use serde::Serialize;

use super::{Amounts, BillingReport, Month, RateTable, Usage};
use crate::error::ProjectionError;
use crate::store::Positions;

const USAGE_COLUMNS: [&str; 13] = [
    "month",
    "account",
    "billing_code",
    "deliveries",
    "recipients",
    "documents",
    "bytes",
    "normal_priority",
    "high_priority",
    "urgent_priority",
    "postmarks",
    "encrypted",
    "password_protected",
];

const AMOUNT_COLUMNS: [&str; 6] = [
    "delivery_cents",
    "recipient_cents",
    "storage_cents",
    "priority_cents",
    "postmark_cents",
    "total_cents",
];

/// Writes the report as CSV: a first line `# ledger positions (chain:next position): 0:N
/// 1:M ...`, a header, and one record per row, with amount columns when `rates` is set.
///
/// A billing code that a spreadsheet would read as a formula (one starting with `=`,
/// `+`, `-`, `@`, a tab or a carriage return) is written with a leading `'`.
/// An empty `billing_code` field means no billing code. A CSV reader skips the first
/// line when `#` is its comment character, as with `csv::ReaderBuilder::comment`.
///
/// # Errors
///
/// [`ProjectionError::Export`] when writing fails.
pub fn write_csv(
    report: &BillingReport,
    rates: Option<&RateTable>,
    mut writer: impl Write,
) -> Result<(), ProjectionError> {
    let failed = |reason: String| ProjectionError::Export {
        format: "CSV",
        reason,
    };

    writeln!(
        writer,
        "# ledger positions (chain:next position): {}",
        positions_text(&report.positions)
    )
    .map_err(|error| failed(error.to_string()))?;

    let mut csv = csv::Writer::from_writer(writer);
    let mut header: Vec<&str> = USAGE_COLUMNS.to_vec();
    if rates.is_some() {
        header.extend(AMOUNT_COLUMNS);
    }
    csv.write_record(&header)
        .map_err(|error| failed(error.to_string()))?;

    for row in &report.rows {
        let usage = &row.usage;
        let mut record = vec![
            row.month.to_string(),
            row.account.to_string(),
            row.billing_code
                .as_deref()
                .map(spreadsheet_safe)
                .unwrap_or_default(),
        ];
        record.extend(
            [
                usage.deliveries,
                usage.recipients,
                usage.documents,
                usage.bytes,
                usage.normal_priority,
                usage.high_priority,
                usage.urgent_priority,
                usage.postmarks,
                usage.encrypted,
                usage.password_protected,
            ]
            .map(|count| count.to_string()),
        );
        if let Some(rates) = rates {
            let amounts = rates.price(usage);
            record.extend(
                [
                    amounts.deliveries,
                    amounts.recipients,
                    amounts.storage,
                    amounts.priority,
                    amounts.postmarks,
                    amounts.total,
                ]
                .map(|cents| cents.to_string()),
            );
        }
        csv.write_record(&record)
            .map_err(|error| failed(error.to_string()))?;
    }
    csv.flush().map_err(|error| failed(error.to_string()))
}

/// Formats positions as `chain:next position` pairs separated by spaces.
fn positions_text(positions: &Positions) -> String {
    positions
        .iter()
        .map(|(chain, position)| format!("{chain}:{position}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Serialize)]
struct JsonReport<'r> {
    /// Next position in each chain: the rows count every event before it and none after.
    ledger_positions: Vec<JsonPosition>,
    rates: Option<&'r RateTable>,
    rows: Vec<JsonRow<'r>>,
}

#[derive(Serialize)]
struct JsonPosition {
    chain: u32,
    next_position: u64,
}

#[derive(Serialize)]
struct JsonRow<'r> {
    month: Month,
    account: AccountId,
    billing_code: Option<&'r str>,
    usage: &'r Usage,
    /// Amounts in cents, when rates were given.
    amounts: Option<Amounts>,
}

/// Writes the report as one JSON object: `ledger_positions` (a list of `chain` and
/// `next_position`), `rates` (or null) and `rows`, each with `month`, `account`,
/// `billing_code`, `usage` and `amounts` in cents (or null without rates).
///
/// # Errors
///
/// [`ProjectionError::Export`] when writing fails.
pub fn write_json(
    report: &BillingReport,
    rates: Option<&RateTable>,
    mut writer: impl Write,
) -> Result<(), ProjectionError> {
    let document = JsonReport {
        ledger_positions: report
            .positions
            .iter()
            .map(|(chain, position)| JsonPosition {
                chain: chain.get(),
                next_position: position.get(),
            })
            .collect(),
        rates,
        rows: report
            .rows
            .iter()
            .map(|row| JsonRow {
                month: row.month,
                account: row.account,
                billing_code: row.billing_code.as_deref(),
                usage: &row.usage,
                amounts: rates.map(|rates| rates.price(&row.usage)),
            })
            .collect(),
    };

    let failed = |reason: String| ProjectionError::Export {
        format: "JSON",
        reason,
    };
    serde_json::to_writer_pretty(&mut writer, &document)
        .map_err(|error| failed(error.to_string()))?;
    writeln!(writer).map_err(|error| failed(error.to_string()))?;
    writer.flush().map_err(|error| failed(error.to_string()))
}

/// Prefixes `text` with `'` when a spreadsheet would run it as a formula.
fn spreadsheet_safe(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod formula_tests {
    use super::spreadsheet_safe;

    #[test]
    fn formula_codes_are_quoted() {
        assert_eq!(spreadsheet_safe("=1+2"), "'=1+2");
        assert_eq!(spreadsheet_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(spreadsheet_safe("-5"), "'-5");
        assert_eq!(spreadsheet_safe("ACME-2026"), "ACME-2026");
    }
}
