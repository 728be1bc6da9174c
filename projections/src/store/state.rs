//! [`ViewState`]: a view's state as seen through the batch being built.

use std::collections::BTreeMap;
use std::fmt;

use rocksdb::{ColumnFamily, DB};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ProjectionError;

/// One view's state during a batch: reads see the stored state overlaid with the
/// batch's own pending writes, and writes stay pending until the batch is committed.
///
/// A state without a store behind it keeps everything in memory, which is how
/// [`billing_as_of`](crate::billing::billing_as_of) reuses the apply code.
pub struct ViewState<'a> {
    view: &'static str,
    stored: Option<(&'a DB, &'a ColumnFamily)>,
    /// Pending writes by key; `None` is a deletion.
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl fmt::Debug for ViewState<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViewState")
            .field("view", &self.view)
            .field("stored", &self.stored.is_some())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<'a> ViewState<'a> {
    pub(crate) fn over_store(view: &'static str, db: &'a DB, family: &'a ColumnFamily) -> Self {
        Self {
            view,
            stored: Some((db, family)),
            pending: BTreeMap::new(),
        }
    }

    /// Creates an empty state that lives in memory only.
    pub fn in_memory(view: &'static str) -> ViewState<'static> {
        ViewState {
            view,
            stored: None,
            pending: BTreeMap::new(),
        }
    }

    /// Returns the name of the view this state belongs to.
    pub fn view(&self) -> &'static str {
        self.view
    }

    /// Reads the value at `key`, including this batch's pending writes.
    ///
    /// # Errors
    ///
    /// [`ProjectionError::Storage`] when RocksDB fails to read.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        if let Some(pending) = self.pending.get(key) {
            return Ok(pending.clone());
        }
        match self.stored {
            Some((db, family)) => db
                .get_cf(family, key)
                .map_err(|error| ProjectionError::from_rocksdb("read", error)),
            None => Ok(None),
        }
    }

    /// Sets `key` to `value` in the pending batch.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.pending.insert(key, Some(value));
    }

    /// Deletes `key` in the pending batch.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.pending.insert(key, None);
    }

    /// Reads and decodes the postcard value at `key`.
    ///
    /// # Errors
    ///
    /// As [`Self::get`], and [`ProjectionError::CorruptState`] when the value does not
    /// decode as `T`.
    pub fn get_decoded<T: DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, ProjectionError> {
        let Some(bytes) = self.get(key)? else {
            return Ok(None);
        };
        decode(self.view, key, &bytes).map(Some)
    }

    /// Encodes `value` with postcard and sets `key` to it in the pending batch.
    pub fn put_encoded<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        let bytes = postcard::to_stdvec(value).expect("postcard encodes every view value");
        self.put(key, bytes);
    }

    /// Takes the pending writes, in key order, leaving none.
    pub(crate) fn take_pending(&mut self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        std::mem::take(&mut self.pending)
    }

    /// Returns the state of an in-memory view: every key with a value, in key order.
    pub(crate) fn memory_entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        debug_assert!(self.stored.is_none(), "only an in-memory state is complete");
        self.pending
            .iter()
            .filter_map(|(key, value)| Some((key.as_slice(), value.as_deref()?)))
    }
}

/// Decodes a postcard value of `view` stored at `key`, rejecting trailing bytes.
pub(crate) fn decode<T: DeserializeOwned>(
    view: &str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, ProjectionError> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes)
        .map_err(|error| ProjectionError::corrupt(view, key, error))?;
    if !rest.is_empty() {
        return Err(ProjectionError::corrupt(
            view,
            key,
            format!("{} bytes after the value", rest.len()),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_pending_writes() {
        let mut state = ViewState::in_memory("test");
        state.put(b"a".to_vec(), b"1".to_vec());
        state.put(b"b".to_vec(), b"2".to_vec());
        state.delete(b"b".to_vec());

        assert_eq!(state.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(state.get(b"b").unwrap(), None);
        assert_eq!(state.get(b"c").unwrap(), None);
        let entries: Vec<_> = state.memory_entries().collect();
        assert_eq!(entries, vec![(&b"a"[..], &b"1"[..])]);
    }

    #[test]
    fn decode_rejects_trailing_bytes() {
        let mut state = ViewState::in_memory("test");
        state.put(b"k".to_vec(), vec![5, 0]);

        let error = state.get_decoded::<u8>(b"k").unwrap_err();

        assert!(
            matches!(error, ProjectionError::CorruptState { ref key, .. } if key == "6b"),
            "{error}"
        );
    }
}
