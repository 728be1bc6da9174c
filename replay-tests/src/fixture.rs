//! The recorded-ledger fixture format: every stored event of a ledger, byte for byte,
//! with the hash recorded beside it.
//!
//! A file is a header followed by one record per event. Integers are big-endian.
//!
//! | part | field | size |
//! | --- | --- | --- |
//! | header | magic [`MAGIC`] | 8 |
//! | header | format version, [`FORMAT_VERSION`] | 4 |
//! | header | chain count | 4 |
//! | header | event count of each chain, in chain order | 8 each |
//! | record | chain | 4 |
//! | record | position | 8 |
//! | record | recorded hash | 32 |
//! | record | stored bytes length | 4 |
//! | record | stored bytes | length |
//!
//! The event counts let [`load`] tell a file that lost its last events from a complete
//! one. [`record`] writes the chains one after another in position order. [`load`] also
//! accepts records of different chains interleaved, as long as each chain's records
//! come in position order.
//!
//! The embedded ledger assigns event ids, positions, links and times on append, so a
//! recorded ledger cannot be appended again byte for byte. [`replay_into`] feeds the
//! recorded events to the views directly instead.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use consign_ledger::{
    BreakReason, ChainBreak, ChainVerifier, EmbeddedLedger, RawEvent, StoredEvent,
};
use consign_projections::{ALL_VIEWS, ProjectionError, ViewStore, ViewStoreOptions};
use consign_schemas::{ChainId, Envelope, Position};

mod codec;
mod error;

pub use codec::{encode, parse};
use codec::{header, push_record};
pub use error::FixtureError;

/// The first 8 bytes of every fixture file.
pub const MAGIC: [u8; 8] = *b"CSGNLDGR";

/// The version of the file layout that this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Length of a record before its stored bytes: chain, position, hash and length.
pub const RECORD_HEADER_LEN: usize = 4 + 8 + 32 + 4;

/// Largest chain count a header may give, the embedded ledger's own limit. It also
/// keeps a damaged header from allocating without bound.
pub(crate) const MAX_CHAINS: u32 = 65_536;

/// Events read from the ledger per call while recording, and applied per batch while
/// replaying.
const BATCH_EVENTS: usize = 1_000;

/// One record of a fixture file, as found, before any check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub chain: ChainId,
    /// Offset of the record's first byte in the file.
    pub offset: u64,
    pub raw: RawEvent,
}

/// The header and records of a fixture file, parsed but not checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedFixture {
    /// Event count of each chain, indexed by chain number.
    pub heads: Vec<Position>,
    pub records: Vec<Record>,
}

/// A loaded and checked fixture: every event of every chain, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recording {
    /// The events of each chain in position order, indexed by chain number.
    pub chains: Vec<Vec<StoredEvent>>,
}

impl Recording {
    pub fn chain_count(&self) -> u32 {
        u32::try_from(self.chains.len()).expect("a loaded fixture has at most 2^16 chains")
    }

    /// Returns every event, chain after chain, each chain in position order.
    pub fn events(&self) -> impl Iterator<Item = &StoredEvent> {
        self.chains.iter().flatten()
    }
}

/// Writes every event of `ledger` to a fixture file at `path`, and returns the number
/// of events written.
///
/// The file is written under a temporary name next to `path` and renamed at the end,
/// so an interrupted run leaves the old file in place. The ledger must not be appended
/// to meanwhile.
///
/// # Errors
///
/// Ledger read failures, an event without a recorded hash, a chain shorter than its
/// head, and [`FixtureError::Write`].
pub fn record(ledger: &EmbeddedLedger, path: &Path) -> Result<u64, FixtureError> {
    let mut heads = Vec::new();
    for chain in ledger.chains() {
        heads.push(ledger.next_position(chain)?);
    }
    let mut buffer = header(&heads);

    let mut events = 0u64;
    for (chain, &head) in ledger.chains().zip(&heads) {
        let mut next = Position::ZERO;
        while next < head {
            let limit = (head.get() - next.get()).min(BATCH_EVENTS as u64) as usize;
            let raws = ledger.read_raw(chain, next, limit)?;
            if raws.is_empty() {
                return Err(FixtureError::ShortChain {
                    chain,
                    found: next,
                    head,
                });
            }
            for raw in &raws {
                let hash = raw.recorded_hash.ok_or(FixtureError::MissingHash {
                    chain,
                    position: raw.position,
                })?;
                push_record(&mut buffer, chain, raw.position, &hash, &raw.bytes);
                next = raw.position.next();
                events += 1;
            }
        }
    }

    write_atomically(path, &buffer)?;
    Ok(events)
}

/// Reads the fixture at `path` and checks every chain: each record's hash against its
/// stored bytes, its decoding, its chain and position fields, the links between
/// neighbours, and the event count of each chain.
///
/// # Errors
///
/// [`FixtureError::Read`], the format errors of [`parse`], and
/// [`FixtureError::Broken`] with the first break of the lowest broken chain.
pub fn load(path: &Path) -> Result<Recording, FixtureError> {
    let bytes = std::fs::read(path).map_err(|source| FixtureError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parsed = parse(path, &bytes)?;
    check_and_decode(path, parsed)
}

/// Runs the ledger's chain check over each chain of `parsed` and decodes the events.
fn check_and_decode(path: &Path, parsed: ParsedFixture) -> Result<Recording, FixtureError> {
    let mut per_chain: Vec<Vec<RawEvent>> = vec![Vec::new(); parsed.heads.len()];
    for record in parsed.records {
        per_chain[record.chain.get() as usize].push(record.raw);
    }

    let mut chains = Vec::with_capacity(per_chain.len());
    for (number, (raws, &head)) in per_chain.into_iter().zip(&parsed.heads).enumerate() {
        let chain = ChainId::new(number as u32);
        let mut verifier = ChainVerifier::from_genesis(chain, head);
        verifier.feed(&raws);
        if let Some(chain_break) = verifier.finish().first_break {
            return Err(FixtureError::Broken {
                path: path.to_path_buf(),
                chain_break,
            });
        }

        let mut events = Vec::with_capacity(raws.len());
        for raw in raws {
            let hash = raw
                .recorded_hash
                .expect("parse records a hash for every event");
            // The verifier decoded every event already, so this cannot fail.
            let envelope = Envelope::decode(&raw.bytes).map_err(|error| FixtureError::Broken {
                path: path.to_path_buf(),
                chain_break: ChainBreak {
                    chain,
                    position: raw.position,
                    reason: BreakReason::Undecodable {
                        reason: error.to_string(),
                    },
                },
            })?;
            events.push(StoredEvent {
                envelope,
                hash,
                bytes: raw.bytes,
            });
        }
        chains.push(events);
    }
    Ok(Recording { chains })
}

/// Opens a new view store in `dir` with every built-in view, and applies every event of
/// `recording` to it, chain after chain, in batches of 1,000 events.
///
/// The store is opened without fsync, because it is thrown away after the test.
///
/// # Errors
///
/// Every error of [`ViewStore::open`] and [`ViewStore::apply`].
pub fn replay_into(recording: &Recording, dir: &Path) -> Result<ViewStore, ProjectionError> {
    let store = open_store(dir, recording.chain_count())?;
    for events in &recording.chains {
        apply_in_batches(&store, events, BATCH_EVENTS)?;
    }
    Ok(store)
}

/// Opens the view store in `dir` with every built-in view and fsync off.
///
/// # Errors
///
/// Every error of [`ViewStore::open`].
pub fn open_store(dir: &Path, chain_count: u32) -> Result<ViewStore, ProjectionError> {
    let options = ViewStoreOptions {
        sync: false,
        ..ViewStoreOptions::new(chain_count)
    };
    ViewStore::open(dir, &options, &ALL_VIEWS)
}

/// Applies `events` to every built-in view in batches of `batch_events` (0 counts as
/// 1), and returns the number of events applied.
///
/// # Errors
///
/// Every error of [`ViewStore::apply`].
pub fn apply_in_batches(
    store: &ViewStore,
    events: &[StoredEvent],
    batch_events: usize,
) -> Result<u64, ProjectionError> {
    let mut applied = 0;
    for batch in events.chunks(batch_events.max(1)) {
        applied += store.apply(&ALL_VIEWS, batch)?;
    }
    Ok(applied)
}

/// Writes `bytes` to a temporary file next to `path`, fsyncs it and renames it over
/// `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), FixtureError> {
    let error = |source| FixtureError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);

    let mut file = std::fs::File::create(&temporary).map_err(error)?;
    file.write_all(bytes).map_err(error)?;
    file.sync_all().map_err(error)?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(error)
}
