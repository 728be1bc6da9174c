//! Test that a large streamed document is written and read with bounded memory.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, stream};

use super::tests::{memory_exclusive, memory_shared, new_store};
use super::*;

const UNLIMITED: BlobLimits = BlobLimits { max_size: u64::MAX };

/// Reads a `kB` value of `field` from /proc/self/status.
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn large_stream_uses_bounded_memory() {
    let _memory = memory_exclusive().await;
    let (_dir, store) = new_store();
    let kek = KeyEncryptionKey::generate();
    const TOTAL: usize = 200 * 1024 * 1024;
    const PIECE: usize = 100_000;

    // Writing 5 to clear_refs resets the peak (VmHWM) to the current RSS (Linux 4.0 on).
    // If that fails, the baseline is the earlier peak, and the check only catches growth
    // beyond it.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let peak_before = proc_status_kib("VmHWM:");
    let started = Instant::now();

    let expected_hash = Arc::new(std::sync::Mutex::new(blake3::Hasher::new()));
    let hasher = expected_hash.clone();
    let source = stream::iter((0..TOTAL).step_by(PIECE)).map(move |offset| {
        let len = PIECE.min(TOTAL - offset);
        let piece: Vec<u8> = (0..len).map(|i| ((offset + i) % 251) as u8).collect();
        hasher.lock().unwrap().update(&piece);
        Ok::<_, io::Error>(Bytes::from(piece))
    });
    let stored = store.put(source, &UNLIMITED, Some(&kek)).await.unwrap();
    let write_time = started.elapsed();

    let mut read = store.open_read(&stored, Some(&kek)).await.unwrap();
    let mut read_len = 0u64;
    while let Some(piece) = read.next().await {
        read_len += piece.unwrap().len() as u64;
    }
    let peak = proc_status_kib("VmHWM:");
    eprintln!(
        "200 MiB encrypted: write {write_time:?}, write and read {:?}, peak growth {} KiB",
        started.elapsed(),
        peak.saturating_sub(peak_before)
    );

    assert_eq!(stored.size, TOTAL as u64);
    assert_eq!(read_len, TOTAL as u64);
    let expected = expected_hash.lock().unwrap().finalize();
    assert_eq!(stored.content_hash.as_bytes(), expected.as_bytes());
    assert!(
        peak.saturating_sub(peak_before) < 64 * 1024,
        "peak RSS grew from {peak_before} KiB to {peak} KiB"
    );
}

#[tokio::test]
async fn uploads_share_and_return_budget() {
    // The uploads keep about 50 MiB of pieces, which would skew the peak measured above.
    let _memory = memory_shared().await;
    let (_dir, store) = new_store();
    const SIZE: usize = 6 * 1024 * 1024;
    const PIECE: usize = 300_000;
    let data = Arc::new(super::tests::sample(SIZE));

    // Eight uploads at once can take 32 MiB in flight, twice the store's budget. Each
    // must still finish with its own bytes.
    let mut uploads = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let data = Arc::clone(&data);
        uploads.push(tokio::spawn(async move {
            let pieces = (0..SIZE)
                .step_by(PIECE)
                .map(|offset| {
                    let piece = &data[offset..(offset + PIECE).min(SIZE)];
                    Ok::<_, io::Error>(Bytes::copy_from_slice(piece))
                })
                .collect::<Vec<_>>();
            store.put(stream::iter(pieces), &UNLIMITED, None).await
        }));
    }
    let failing = stream::iter([
        Ok(Bytes::from(vec![7; 3 * 1024 * 1024])),
        Err(io::Error::other("client went away")),
    ]);
    let failed = store.put(failing, &UNLIMITED, None).await;

    let expected = blake3::hash(&data);
    for upload in uploads {
        let stored = upload.await.unwrap().unwrap();
        assert_eq!(stored.content_hash.as_bytes(), expected.as_bytes());
    }
    assert!(
        matches!(failed, Err(BlobError::Source { .. })),
        "got {failed:?}"
    );

    // The failed upload's thread writes or drops its buffers after `put` returned, and
    // their share of the budget comes back then.
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while store.in_flight.available_permits() != super::sink::STORE_KIB_IN_FLIGHT {
        assert!(
            Instant::now() < deadline,
            "{} KiB of the store's budget never came back",
            super::sink::STORE_KIB_IN_FLIGHT - store.in_flight.available_permits()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
