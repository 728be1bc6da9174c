//! The byte ranges of each document that a recipient has fetched in pieces.
//!
//! A download manager or a resumed transfer fetches a document with several Range
//! requests, none of which covers the whole document. The served ranges are merged
//! here per recipient and document, and the range that completes the document reports
//! it, so that the download is recorded like one made in a single response.
//!
//! The ranges live in this server's memory only. Pieces served before a restart, or
//! by another server of a Kafka cluster, do not count towards the whole.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use consign_schemas::{DocumentId, RecipientId};

/// Time after its last piece when a partly fetched document is forgotten.
const LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Maximum number of partly fetched documents kept; the least recently fetched are
/// dropped beyond it.
const MAX_DOCUMENTS: usize = 100_000;

/// Maximum number of separate ranges kept for one document. Pieces beyond it are not
/// counted, so a client that fetches a document in tiny scattered pieces cannot make
/// the server keep a long list.
const MAX_RANGES: usize = 1_024;

/// Served byte ranges as `(start, end)` pairs, end exclusive, sorted and apart.
pub type Ranges = Vec<(u64, u64)>;

type Key = (RecipientId, DocumentId);

struct Fetched {
    ranges: Ranges,
    last_fetch: Instant,
}

/// The partly fetched documents of every recipient.
#[derive(Default)]
pub struct Coverage {
    documents: Mutex<HashMap<Key, Fetched>>,
}

impl std::fmt::Debug for Coverage {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Coverage").finish_non_exhaustive()
    }
}

impl Coverage {
    /// Adds the served range `start..end` of a document of `size` bytes.
    ///
    /// Returns the ranges served before it when the document is now covered from its
    /// first byte to its last, and removes the document's entry. If recording the download
    /// then fails, [`Coverage::restore`] takes those ranges back.
    pub fn complete(
        &self,
        recipient: RecipientId,
        document: DocumentId,
        (start, end): (u64, u64),
        size: u64,
    ) -> Option<Ranges> {
        let mut documents = self.documents.lock().expect("coverage lock poisoned");
        let now = Instant::now();
        let key = (recipient, document);
        let previous = documents
            .get(&key)
            .map(|fetched| fetched.ranges.clone())
            .unwrap_or_default();

        let merged = merge(&previous, (start, end));
        if merged
            .first()
            .is_some_and(|&(first, last)| first == 0 && last >= size)
        {
            documents.remove(&key);
            return Some(previous);
        }
        if merged.len() > MAX_RANGES {
            return None;
        }
        if !documents.contains_key(&key) {
            make_room(&mut documents, now);
        }
        documents.insert(
            key,
            Fetched {
                ranges: merged,
                last_fetch: now,
            },
        );
        None
    }

    /// Puts back the ranges that [`Coverage::complete`] returned, after the download
    /// they completed could not be recorded.
    pub fn restore(&self, recipient: RecipientId, document: DocumentId, ranges: Ranges) {
        if ranges.is_empty() {
            return;
        }
        let mut documents = self.documents.lock().expect("coverage lock poisoned");
        let now = Instant::now();
        make_room(&mut documents, now);
        documents.insert(
            (recipient, document),
            Fetched {
                ranges,
                last_fetch: now,
            },
        );
    }
}

/// Drops forgotten documents, and the least recently fetched one when the map is
/// still full.
fn make_room(documents: &mut HashMap<Key, Fetched>, now: Instant) {
    if documents.len() < MAX_DOCUMENTS {
        return;
    }
    documents.retain(|_, fetched| now.duration_since(fetched.last_fetch) < LIFETIME);
    if documents.len() >= MAX_DOCUMENTS
        && let Some(oldest) = documents
            .iter()
            .min_by_key(|(_, fetched)| fetched.last_fetch)
            .map(|(key, _)| *key)
    {
        documents.remove(&oldest);
    }
}

/// Returns `ranges` with `added` merged in, joining ranges that overlap or touch.
fn merge(ranges: &[(u64, u64)], added: (u64, u64)) -> Ranges {
    let mut merged: Ranges = Vec::with_capacity(ranges.len() + 1);
    let mut pending = Some(added);
    for &range in ranges {
        if let Some(new) = pending
            && new.0 < range.0
        {
            push_joined(&mut merged, new);
            pending = None;
        }
        push_joined(&mut merged, range);
    }
    if let Some(new) = pending {
        push_joined(&mut merged, new);
    }
    merged
}

/// Appends `range` to sorted `ranges`, joining it with the last one if they overlap or
/// touch.
fn push_joined(ranges: &mut Ranges, range: (u64, u64)) {
    match ranges.last_mut() {
        Some(last) if range.0 <= last.1 => last.1 = last.1.max(range.1),
        _ => ranges.push(range),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_joins_overlapping_and_touching() {
        assert_eq!(merge(&[], (5, 10)), vec![(5, 10)]);
        assert_eq!(merge(&[(0, 10)], (10, 20)), vec![(0, 20)]);
        assert_eq!(merge(&[(10, 20)], (0, 5)), vec![(0, 5), (10, 20)]);
        assert_eq!(merge(&[(0, 5), (10, 20)], (4, 11)), vec![(0, 20)]);
        assert_eq!(
            merge(&[(0, 5), (30, 40)], (10, 20)),
            vec![(0, 5), (10, 20), (30, 40)]
        );
        assert_eq!(merge(&[(0, 50)], (10, 20)), vec![(0, 50)]);
    }

    #[test]
    fn pieces_complete_document_once() {
        let coverage = Coverage::default();
        let recipient = RecipientId::random();
        let document = DocumentId::random();

        assert_eq!(coverage.complete(recipient, document, (50, 100), 100), None);
        assert_eq!(coverage.complete(recipient, document, (0, 10), 100), None);
        assert_eq!(
            coverage.complete(recipient, document, (10, 50), 100),
            Some(vec![(0, 10), (50, 100)])
        );
        // The document starts over once its download is complete.
        assert_eq!(coverage.complete(recipient, document, (0, 10), 100), None);
    }

    #[test]
    fn whole_document_clears_pieces() {
        let coverage = Coverage::default();
        let recipient = RecipientId::random();
        let document = DocumentId::random();

        assert_eq!(coverage.complete(recipient, document, (0, 1), 100), None);
        assert_eq!(
            coverage.complete(recipient, document, (0, 100), 100),
            Some(vec![(0, 1)])
        );
        assert_eq!(coverage.complete(recipient, document, (1, 100), 100), None);
    }

    #[test]
    fn pieces_counted_per_recipient_and_document() {
        let coverage = Coverage::default();
        let (first, second) = (RecipientId::random(), RecipientId::random());
        let document = DocumentId::random();

        assert_eq!(coverage.complete(first, document, (0, 60), 100), None);
        assert_eq!(coverage.complete(second, document, (60, 100), 100), None);
        assert_eq!(
            coverage.complete(first, DocumentId::random(), (60, 100), 100),
            None
        );
        assert!(coverage.complete(first, document, (60, 100), 100).is_some());
    }

    #[test]
    fn restored_ranges_complete_on_retry() {
        let coverage = Coverage::default();
        let recipient = RecipientId::random();
        let document = DocumentId::random();

        assert_eq!(coverage.complete(recipient, document, (0, 60), 100), None);
        let previous = coverage
            .complete(recipient, document, (60, 100), 100)
            .unwrap();
        coverage.restore(recipient, document, previous);
        assert_eq!(
            coverage.complete(recipient, document, (60, 100), 100),
            Some(vec![(0, 60)])
        );
    }

    #[test]
    fn scattered_pieces_capped() {
        let coverage = Coverage::default();
        let recipient = RecipientId::random();
        let document = DocumentId::random();
        let size = 4 * MAX_RANGES as u64;

        for index in 0..MAX_RANGES as u64 {
            assert_eq!(
                coverage.complete(recipient, document, (4 * index, 4 * index + 1), size),
                None
            );
        }
        // One range more than the cap is not kept, so the gaps stay open.
        assert_eq!(
            coverage.complete(recipient, document, (size - 2, size - 1), size),
            None
        );
        let ranges = coverage.documents.lock().unwrap()[&(recipient, document)]
            .ranges
            .len();
        assert_eq!(ranges, MAX_RANGES);
    }
}
