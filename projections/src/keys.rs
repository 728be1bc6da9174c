//! Byte layouts shared by the views' keys: fixed-width big-endian fields, so that
//! RocksDB's bytewise key order is the order of the values.

use consign_schemas::Timestamp;

/// Encodes a time so that byte order is time order, negative times included: the
/// microseconds as a big-endian `u64` with the sign bit flipped.
pub(crate) fn time_key(time: Timestamp) -> [u8; 8] {
    ((time.as_micros() as u64) ^ (1 << 63)).to_be_bytes()
}

/// Decodes [`time_key`].
pub(crate) fn time_from_key(bytes: [u8; 8]) -> Timestamp {
    Timestamp::from_micros((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
}

/// Concatenates a one-byte tag and fixed-width parts into a key.
pub(crate) fn key(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let length = 1 + parts.iter().map(|part| part.len()).sum::<usize>();
    let mut key = Vec::with_capacity(length);
    key.push(tag);
    for part in parts {
        key.extend_from_slice(part);
    }
    key
}

/// Returns the smallest key greater than every key that starts with `prefix`, or
/// `None` when the prefix is all `0xFF` bytes and no such key exists.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Reads `N` bytes at `offset` of `bytes`, or `None` past the end.
pub(crate) fn field<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    bytes.get(offset..offset + N)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_key_orders_like_time() {
        let times = [
            i64::MIN,
            -1_000_000,
            -1,
            0,
            1,
            1_772_438_400_000_000,
            i64::MAX,
        ];
        let keys: Vec<_> = times
            .iter()
            .map(|&micros| time_key(Timestamp::from_micros(micros)))
            .collect();

        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        for (micros, key) in times.iter().zip(keys) {
            assert_eq!(time_from_key(key), Timestamp::from_micros(*micros));
        }
    }

    #[test]
    fn prefix_end_skips_trailing_ff() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(&[]), None);
    }

    #[test]
    fn field_reads_within_bounds_only() {
        let bytes = [1, 2, 3, 4, 5];

        assert_eq!(field::<2>(&bytes, 3), Some([4, 5]));
        assert_eq!(field::<2>(&bytes, 4), None);
    }
}
