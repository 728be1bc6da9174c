//! Damaged fixtures: a changed byte, a rewritten event, a missing event and a cut file
//! are each reported where they are.

use std::path::PathBuf;

use consign_ledger::BreakReason;
use consign_replay_tests::fixture::{self, FixtureError, ParsedFixture, RECORD_HEADER_LEN, Record};
use consign_schemas::{ChainId, Envelope, Position, Timestamp, hash_stored_event};
use tempfile::TempDir;

use crate::common::specs;

/// Where in a record a byte is flipped.
#[derive(Clone, Copy, Debug)]
enum Area {
    /// The stored bytes, at this fraction of their length, in percent.
    StoredBytes(usize),
    /// The 32-byte recorded hash.
    RecordedHash,
}

/// Place of the damaged event in its chain.
#[derive(Clone, Copy, Debug)]
enum Place {
    First,
    Middle,
    Last,
}

/// Reads the multi-chain fixture and parses it.
fn multi_fixture() -> (PathBuf, Vec<u8>, ParsedFixture) {
    let spec = specs()
        .into_iter()
        .find(|spec| spec.name == "multi")
        .unwrap();
    let path = spec.ledger_path();
    let bytes = std::fs::read(&path).unwrap();
    let parsed = fixture::parse(&path, &bytes).unwrap();
    (path, bytes, parsed)
}

/// Returns the first, middle or last record of `chain`.
fn pick(parsed: &ParsedFixture, chain: u32, place: Place) -> Record {
    let records: Vec<&Record> = parsed
        .records
        .iter()
        .filter(|record| record.chain == ChainId::new(chain))
        .collect();
    let index = match place {
        Place::First => 0,
        Place::Middle => records.len() / 2,
        Place::Last => records.len() - 1,
    };
    records[index].clone()
}

/// Writes `bytes` as a fixture in a new temporary directory and loads it.
fn load_copy(bytes: &[u8]) -> (TempDir, Result<fixture::Recording, FixtureError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.ledger");
    std::fs::write(&path, bytes).unwrap();
    let result = fixture::load(&path);
    (dir, result)
}

/// Returns the chain, position and reason of a [`FixtureError::Broken`], or panics with
/// the error.
fn broken_at(result: Result<fixture::Recording, FixtureError>) -> (ChainId, Position, BreakReason) {
    match result {
        Err(FixtureError::Broken { chain_break, .. }) => {
            (chain_break.chain, chain_break.position, chain_break.reason)
        }
        Err(other) => panic!("expected a chain break, got: {other}"),
        Ok(_) => panic!("expected a chain break, but the damaged fixture loaded"),
    }
}

#[test]
fn damaged_fixture_reported_at_position() {
    let (_, bytes, parsed) = multi_fixture();
    let cases = [
        (0, Place::First, Area::StoredBytes(0)),
        (1, Place::Middle, Area::StoredBytes(50)),
        (2, Place::Last, Area::StoredBytes(99)),
        (3, Place::Middle, Area::StoredBytes(30)),
        (3, Place::Last, Area::RecordedHash),
    ];
    for (chain, place, area) in cases {
        let record = pick(&parsed, chain, place);
        let offset = record.offset as usize;
        let at = match area {
            Area::StoredBytes(percent) => {
                let length = record.raw.bytes.len();
                offset + RECORD_HEADER_LEN + (length * percent / 100).min(length - 1)
            }
            // The sixth byte of the hash, which follows the chain and the position.
            Area::RecordedHash => offset + 4 + 8 + 5,
        };
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x20;

        let (_dir, result) = load_copy(&damaged);
        let (found_chain, found_position, reason) = broken_at(result);

        let case = format!("chain {chain}, {place:?} event, {area:?}");
        assert_eq!(found_chain, record.chain, "{case}: chain");
        assert_eq!(found_position, record.raw.position, "{case}: position");
        assert!(
            matches!(reason, BreakReason::HashMismatch { .. }),
            "{case}: reason {reason}"
        );
    }
}

#[test]
fn rewritten_event_breaks_next_link() {
    let (_, _, mut parsed) = multi_fixture();
    let record = pick(&parsed, 1, Place::Middle);
    let index = parsed.records.iter().position(|r| *r == record).unwrap();

    // An attacker changes the time and records the new hash, but leaves the next
    // event's link alone.
    let mut envelope = Envelope::decode(&record.raw.bytes).unwrap();
    envelope.time = Timestamp::from_micros(envelope.time.as_micros() + 1);
    let rewritten = envelope.encode().unwrap();
    parsed.records[index].raw.recorded_hash = Some(hash_stored_event(&rewritten));
    parsed.records[index].raw.bytes = rewritten;

    let (_dir, result) = load_copy(&fixture::encode(&parsed));
    let (chain, position, reason) = broken_at(result);

    assert_eq!(chain, record.chain);
    assert_eq!(position, record.raw.position.next());
    assert!(matches!(reason, BreakReason::BrokenLink { .. }), "{reason}");
}

#[test]
fn removed_event_reported_as_gap() {
    let (_, _, mut parsed) = multi_fixture();
    let record = pick(&parsed, 2, Place::Middle);
    parsed.records.retain(|r| *r != record);

    let (_dir, result) = load_copy(&fixture::encode(&parsed));
    let (chain, position, reason) = broken_at(result);

    assert_eq!(chain, record.chain);
    assert_eq!(position, record.raw.position);
    assert_eq!(reason, BreakReason::Gap);
}

#[test]
fn missing_last_event_reported_as_gap() {
    let (_, _, mut parsed) = multi_fixture();
    let record = pick(&parsed, 3, Place::Last);
    parsed.records.retain(|r| *r != record);

    let (_dir, result) = load_copy(&fixture::encode(&parsed));
    let (chain, position, reason) = broken_at(result);

    assert_eq!(chain, record.chain);
    assert_eq!(position, record.raw.position);
    assert_eq!(reason, BreakReason::Gap);
}

#[test]
fn cut_fixture_reported_as_truncated() {
    let (_, bytes, parsed) = multi_fixture();
    let record = pick(&parsed, 1, Place::Middle);
    let cut = record.offset as usize + RECORD_HEADER_LEN + 3;

    let (_dir, result) = load_copy(&bytes[..cut]);

    match result {
        Err(FixtureError::Truncated { offset, part, .. }) => {
            assert_eq!(offset, record.offset + RECORD_HEADER_LEN as u64);
            assert_eq!(part, "stored bytes");
        }
        Err(other) => panic!("expected a truncated fixture, got: {other}"),
        Ok(_) => panic!("expected a truncated fixture, but it loaded"),
    }
}

#[test]
fn foreign_file_rejected() {
    let (_dir, not_a_fixture) = load_copy(b"{\"this\": \"is JSON\"}");
    let mut newer = fixture::MAGIC.to_vec();
    newer.extend_from_slice(&(fixture::FORMAT_VERSION + 1).to_be_bytes());
    newer.extend_from_slice(&1u32.to_be_bytes());
    let (_newer_dir, newer_version) = load_copy(&newer);

    assert!(
        matches!(not_a_fixture, Err(FixtureError::NotAFixture { .. })),
        "{not_a_fixture:?}"
    );
    assert!(
        matches!(
            newer_version,
            Err(FixtureError::UnsupportedVersion { found: 2, .. })
        ),
        "{newer_version:?}"
    );
}

#[test]
fn record_beyond_chain_count_rejected() {
    let (_, _, mut parsed) = multi_fixture();
    let record = pick(&parsed, 0, Place::First);
    let index = parsed.records.iter().position(|r| *r == record).unwrap();
    parsed.records[index].chain = ChainId::new(4);

    let (_dir, result) = load_copy(&fixture::encode(&parsed));

    assert!(
        matches!(
            result,
            Err(FixtureError::UnknownChain {
                chain: 4,
                chains: 4,
                ..
            })
        ),
        "{:?}",
        result.map(|recording| recording.chain_count())
    );
}
