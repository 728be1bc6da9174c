//! Verification of the embedded store's chains and of the indexes stored beside them.

use consign_schemas::{ChainId, Position, genesis_hash, hash_stored_event};
use rocksdb::{IteratorMode, ReadOptions};

use super::EmbeddedLedger;
use super::open::{idempotency_family, meta_family};
use super::read::read_raw;
use super::tree::merkle_family;
use crate::error::LedgerError;
use crate::keys;
use crate::record::RawEvent;
use crate::verify::{AcceptedEvent, ChainChecks, ChainReport, ChainVerifier};

/// Events read per chunk; the next chunk is read while the current one is checked.
const CHUNK: usize = 16_384;

impl EmbeddedLedger {
    /// Verifies `chain` from `from` up to but excluding `to`, or up to its recorded
    /// head and beyond it when `to` is `None`, so that events stored past the head are
    /// reported too. `progress` receives the number of events checked so far.
    ///
    /// # Errors
    ///
    /// Storage failures and [`LedgerError::UnknownChain`]. Damage to the chain is not an
    /// error: it is the report's `first_break`.
    pub fn verify_chain(
        &self,
        chain: ChainId,
        from: Position,
        to: Option<Position>,
        progress: &dyn Fn(u64),
    ) -> Result<ChainReport, LedgerError> {
        self.verify_chain_with(chain, from, to, ChainChecks::default(), progress)
    }

    /// Verifies like [`Self::verify_chain`] with the extra `checks`.
    ///
    /// # Errors
    ///
    /// As [`Self::verify_chain`].
    pub fn verify_chain_with(
        &self,
        chain: ChainId,
        from: Position,
        to: Option<Position>,
        checks: ChainChecks,
        progress: &dyn Fn(u64),
    ) -> Result<ChainReport, LedgerError> {
        self.verify_chain_observed(chain, from, to, checks, progress, |_| Ok(()))
    }

    /// Verifies like [`Self::verify_chain_with`] and shows each event that passed to
    /// `observer`, in position order. The first error of `observer` ends the
    /// verification and is returned.
    ///
    /// # Errors
    ///
    /// As [`Self::verify_chain`], and the error of `observer`.
    pub fn verify_chain_observed(
        &self,
        chain: ChainId,
        from: Position,
        to: Option<Position>,
        checks: ChainChecks,
        progress: &dyn Fn(u64),
        mut observer: impl FnMut(&AcceptedEvent<'_>) -> Result<(), LedgerError> + Send,
    ) -> Result<ChainReport, LedgerError> {
        let head = self.next_position(chain)?;
        let end = to.unwrap_or(head).min(head);
        let limit_to_end = to.is_some();

        let previous = if from == Position::ZERO {
            genesis_hash(chain)
        } else {
            let before = Position::new(from.get() - 1);
            match read_raw(&self.shared, chain, before, 1)?.first() {
                Some(raw) if raw.position == before => hash_stored_event(&raw.bytes),
                _ => genesis_hash(chain),
            }
        };
        let mut verifier = ChainVerifier::new(chain, from, previous, end).with_checks(checks);

        let read_chunk = |start: Position| -> Result<Vec<RawEvent>, LedgerError> {
            let mut limit = CHUNK;
            if limit_to_end {
                let remaining = end.get().saturating_sub(start.get());
                limit = limit.min(usize::try_from(remaining).unwrap_or(usize::MAX));
                if limit == 0 {
                    return Ok(Vec::new());
                }
            }
            read_raw(&self.shared, chain, start, limit)
        };

        let mut checked = 0u64;
        let mut current = read_chunk(from)?;
        while !current.is_empty() && !verifier.is_stopped() {
            let next_start = current
                .last()
                .map(|raw| raw.position.next())
                .unwrap_or(from);
            let (next, observed) = rayon::join(
                || read_chunk(next_start),
                || verifier.feed_observed(&current, &mut observer),
            );
            observed?;
            checked += current.len() as u64;
            progress(checked);
            current = next?;
        }
        Ok(verifier.finish())
    }

    /// Describes the events that the table file named in a RocksDB corruption `message`
    /// holds, such as `000008.sst holds events 0:0 to 0:5123`, or the index it holds.
    /// Returns `None` when the message names no live table file. RocksDB checks whole
    /// blocks, so a damaged block names a file but no single event.
    pub fn damaged_table_events(&self, message: &str) -> Option<String> {
        let file = message
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
            .find(|word| {
                word.strip_suffix(".sst").is_some_and(|number| {
                    !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
                })
            })?;
        let live = self.shared.db.live_files().ok()?;
        let table = live
            .iter()
            .find(|table| table.name.trim_start_matches('/') == file)?;
        if table.column_family_name != super::CF_EVENTS {
            return Some(format!(
                "{file} holds the {} index, not events",
                table.column_family_name
            ));
        }
        let first = keys::parse_event_key(table.start_key.as_deref()?)?;
        let last = keys::parse_event_key(table.end_key.as_deref()?)?;
        Some(format!(
            "{file} holds events {}:{} to {}:{}",
            first.0, first.1, last.0, last.1
        ))
    }

    /// Reads every entry of the idempotency, Merkle and meta indexes with block
    /// checksums on, so that damage to their table files is found although the chains
    /// verify. Returns the number of entries read.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Corrupt`] naming the index whose stored data is damaged, and
    /// storage failures.
    pub fn check_indexes(&self, progress: &dyn Fn(u64)) -> Result<u64, LedgerError> {
        let db = &self.shared.db;
        let mut families = vec![
            ("idempotency", idempotency_family(db)),
            ("meta", meta_family(db)),
        ];
        if let Some(merkle) = merkle_family(db) {
            families.push(("Merkle", merkle));
        }

        let mut entries = 0u64;
        for (name, family) in families {
            let mut options = ReadOptions::default();
            options.set_verify_checksums(true);
            options.fill_cache(false);
            for item in db.iterator_cf_opt(family, options, IteratorMode::Start) {
                if let Err(error) = item {
                    let reason = crate::error::rocksdb_reason(error);
                    if !reason.starts_with("Corruption") {
                        return Err(LedgerError::from_storage_reason("index check", reason));
                    }
                    return Err(LedgerError::Corrupt {
                        dir: self.shared.dir.clone(),
                        reason: format!("the {name} index is damaged: {reason}"),
                    });
                }
                entries += 1;
                if entries.is_multiple_of(65_536) {
                    progress(entries);
                }
            }
        }
        progress(entries);
        Ok(entries)
    }
}
