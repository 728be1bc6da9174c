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
//! one. [`record`] writes the chains one after another in position order; [`load`] also
//! accepts records of different chains interleaved, as long as each chain's records
//! come in position order.
//!
//! The embedded ledger assigns event ids, positions, links and times on append, so a
//! recorded ledger cannot be appended again byte for byte. [`replay_into`] feeds the
//! recorded events to the views directly instead.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use consign_ledger::{
    BreakReason, ChainBreak, ChainVerifier, EmbeddedLedger, LedgerError, RawEvent, StoredEvent,
};
use consign_projections::{ALL_VIEWS, ProjectionError, ViewStore, ViewStoreOptions};
use consign_schemas::{ChainId, Envelope, Hash32, Position};

/// The first 8 bytes of every fixture file.
pub const MAGIC: [u8; 8] = *b"CSGNLDGR";

/// The version of the file layout that this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Length of a record before its stored bytes: chain, position, hash and length.
pub const RECORD_HEADER_LEN: usize = 4 + 8 + 32 + 4;

/// Largest chain count a header may give. The embedded ledger allows fewer; the bound
/// only stops a damaged header from allocating without limit.
const MAX_CHAINS: u32 = 1 << 16;

/// Events read from the ledger per call while recording, and applied per batch while
/// replaying.
const BATCH_EVENTS: usize = 1_000;

/// A fixture that failed to record, read or check.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("cannot read fixture {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot write fixture {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{} is not a recorded ledger: it does not start with the magic bytes CSGNLDGR", path.display())]
    NotAFixture { path: PathBuf },

    #[error(
        "{} has fixture format version {found}, but this build reads only version \
         {FORMAT_VERSION}; regenerate the fixture",
        path.display()
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },

    #[error("{} gives {chains} chains in its header; the valid range is 1 to {MAX_CHAINS}", path.display())]
    InvalidChainCount { path: PathBuf, chains: u32 },

    #[error(
        "{} is truncated at byte {offset}: the {part} needs {needed} bytes, but {available} remain",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        offset: u64,
        part: &'static str,
        needed: u64,
        available: u64,
    },

    #[error(
        "{}: the record at byte {offset} names chain {chain}, but the header gives {chains} chains",
        path.display()
    )]
    UnknownChain {
        path: PathBuf,
        offset: u64,
        chain: u32,
        chains: u32,
    },

    /// A chain check failed: the break names the chain and position.
    #[error("{}: {chain_break}", path.display())]
    Broken {
        path: PathBuf,
        chain_break: ChainBreak,
    },

    #[error(
        "chain {chain} position {position} has no recorded hash, so the ledger cannot be \
         recorded; check it with `consign ledger verify`"
    )]
    MissingHash { chain: ChainId, position: Position },

    #[error("chain {chain} ended at position {found} while recording, before its head {head}")]
    ShortChain {
        chain: ChainId,
        found: Position,
        head: Position,
    },

    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

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

/// Parses the header and the records of fixture `bytes`, read from `path`, without
/// checking hashes or links.
///
/// # Errors
///
/// [`FixtureError::NotAFixture`], [`FixtureError::UnsupportedVersion`],
/// [`FixtureError::InvalidChainCount`], [`FixtureError::Truncated`] and
/// [`FixtureError::UnknownChain`].
pub fn parse(path: &Path, bytes: &[u8]) -> Result<ParsedFixture, FixtureError> {
    let mut cursor = Cursor {
        path,
        bytes,
        offset: 0,
    };
    if cursor.take(MAGIC.len(), "magic")? != MAGIC {
        return Err(FixtureError::NotAFixture {
            path: path.to_path_buf(),
        });
    }
    let version = cursor.u32("format version")?;
    if version != FORMAT_VERSION {
        return Err(FixtureError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let chains = cursor.u32("chain count")?;
    if chains == 0 || chains > MAX_CHAINS {
        return Err(FixtureError::InvalidChainCount {
            path: path.to_path_buf(),
            chains,
        });
    }
    let mut heads = Vec::with_capacity(chains as usize);
    for _ in 0..chains {
        heads.push(Position::new(cursor.u64("event count")?));
    }

    let mut records = Vec::new();
    while cursor.remaining() > 0 {
        let offset = cursor.offset as u64;
        let chain = cursor.u32("record chain")?;
        if chain >= chains {
            return Err(FixtureError::UnknownChain {
                path: path.to_path_buf(),
                offset,
                chain,
                chains,
            });
        }
        let position = Position::new(cursor.u64("record position")?);
        let hash: [u8; 32] = cursor
            .take(32, "recorded hash")?
            .try_into()
            .expect("take returns the requested length");
        let length = cursor.u32("stored bytes length")? as usize;
        let stored = cursor.take(length, "stored bytes")?;
        records.push(Record {
            chain: ChainId::new(chain),
            offset,
            raw: RawEvent {
                position,
                recorded_hash: Some(Hash32::from_bytes(hash)),
                bytes: stored.to_vec(),
            },
        });
    }
    Ok(ParsedFixture { heads, records })
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
            let hash = raw.recorded_hash.expect("parse records a hash for every event");
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

/// Encodes a parsed fixture back into file bytes, with the records in the order given.
/// `encode(&parse(path, bytes)?)` returns `bytes` unchanged, so tests build damaged
/// fixtures this way. A record without a recorded hash gets 32 zero bytes, which
/// [`load`] reports as a hash mismatch.
pub fn encode(parsed: &ParsedFixture) -> Vec<u8> {
    let mut buffer = header(&parsed.heads);
    for record in &parsed.records {
        let hash = record.raw.recorded_hash.unwrap_or(Hash32::from_bytes([0; 32]));
        push_record(
            &mut buffer,
            record.chain,
            record.raw.position,
            &hash,
            &record.raw.bytes,
        );
    }
    buffer
}

/// Builds the file header for chains with the given event counts.
fn header(heads: &[Position]) -> Vec<u8> {
    let chains = u32::try_from(heads.len()).expect("a ledger has fewer than 2^32 chains");
    let mut buffer = Vec::with_capacity(16 + 8 * heads.len());
    buffer.extend_from_slice(&MAGIC);
    buffer.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    buffer.extend_from_slice(&chains.to_be_bytes());
    for head in heads {
        buffer.extend_from_slice(&head.get().to_be_bytes());
    }
    buffer
}

fn push_record(buffer: &mut Vec<u8>, chain: ChainId, position: Position, hash: &Hash32, bytes: &[u8]) {
    let length = u32::try_from(bytes.len()).expect("a stored event is smaller than 4 GiB");
    buffer.extend_from_slice(&chain.get().to_be_bytes());
    buffer.extend_from_slice(&position.get().to_be_bytes());
    buffer.extend_from_slice(hash.as_bytes());
    buffer.extend_from_slice(&length.to_be_bytes());
    buffer.extend_from_slice(bytes);
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

/// Reads the fields of a fixture file in order, reporting where it ends too early.
struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    fn take(&mut self, length: usize, part: &'static str) -> Result<&'a [u8], FixtureError> {
        if length > self.remaining() {
            return Err(FixtureError::Truncated {
                path: self.path.to_path_buf(),
                offset: self.offset as u64,
                part,
                needed: length as u64,
                available: self.remaining() as u64,
            });
        }
        let field = &self.bytes[self.offset..self.offset + length];
        self.offset += length;
        Ok(field)
    }

    fn u32(&mut self, part: &'static str) -> Result<u32, FixtureError> {
        let field = self.take(4, part)?;
        Ok(u32::from_be_bytes(field.try_into().expect("take returns 4 bytes")))
    }

    fn u64(&mut self, part: &'static str) -> Result<u64, FixtureError> {
        let field = self.take(8, part)?;
        Ok(u64::from_be_bytes(field.try_into().expect("take returns 8 bytes")))
    }
}
