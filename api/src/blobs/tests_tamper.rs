//! Tests that altered files, descriptors and keys are reported as errors and never
//! yield wrong plaintext.

use std::path::PathBuf;

use futures::StreamExt;

use super::chunk::TAG_SIZE;
use super::tests::{new_store, read_all, sample, source};
use super::*;

const KIB_64: usize = 64 * 1024;
const UNLIMITED: BlobLimits = BlobLimits { max_size: u64::MAX };
const SEALED_CHUNK: usize = KIB_64 + TAG_SIZE;

/// Stores three full chunks and a short fourth one, encrypted.
async fn stored_encrypted() -> (
    tempfile::TempDir,
    BlobStore,
    KeyEncryptionKey,
    StoredBlob,
    Vec<u8>,
) {
    let (dir, store) = new_store();
    let kek = KeyEncryptionKey::generate();
    let data = sample(3 * KIB_64 + 500);
    let stored = store
        .put(source(&data), &UNLIMITED, Some(&kek))
        .await
        .unwrap();
    (dir, store, kek, stored, data)
}

fn object_file(store: &BlobStore, blob: &StoredBlob) -> PathBuf {
    store.object_path(&blob.storage_key)
}

fn is_integrity(result: &Result<Vec<u8>, BlobError>) -> bool {
    matches!(result, Err(BlobError::Integrity { .. }))
}

/// Reads the whole blob, keeping whatever plaintext came before an error.
async fn read_collecting(
    store: &BlobStore,
    blob: &StoredBlob,
    kek: Option<&KeyEncryptionKey>,
) -> (Vec<u8>, Result<(), BlobError>) {
    let mut stream = match store.open_read(blob, kek).await {
        Ok(stream) => stream,
        Err(error) => return (Vec::new(), Err(error)),
    };
    let mut data = Vec::new();
    while let Some(piece) = stream.next().await {
        match piece {
            Ok(piece) => data.extend_from_slice(&piece),
            Err(error) => return (data, Err(error)),
        }
    }
    (data, Ok(()))
}

#[tokio::test]
async fn flipped_ciphertext_byte_is_detected() {
    let (_dir, store, kek, stored, data) = stored_encrypted().await;
    let path = object_file(&store, &stored);
    let mut file = std::fs::read(&path).unwrap();
    file[SEALED_CHUNK + 100] ^= 0x01;
    std::fs::write(&path, &file).unwrap();

    let (yielded, result) = read_collecting(&store, &stored, Some(&kek)).await;
    assert!(
        matches!(result, Err(BlobError::Integrity { .. })),
        "{result:?}"
    );
    assert!(
        yielded == data[..KIB_64],
        "only the intact first chunk may be yielded"
    );

    let range = read_all(
        store
            .read_range(&stored, Some(&kek), KIB_64 as u64 + 5, 10)
            .await
            .unwrap(),
    )
    .await;
    assert!(
        is_integrity(&range),
        "range in the altered chunk: {range:?}"
    );

    let intact = read_all(store.read_range(&stored, Some(&kek), 0, 10).await.unwrap())
        .await
        .unwrap();
    assert!(
        intact == data[..10],
        "a range in an intact chunk still reads"
    );
}

#[tokio::test]
async fn flipped_tag_byte_is_detected() {
    let (_dir, store, kek, stored, _data) = stored_encrypted().await;
    let path = object_file(&store, &stored);
    let mut file = std::fs::read(&path).unwrap();
    let last = file.len() - 1;
    file[last] ^= 0x80;
    std::fs::write(&path, &file).unwrap();

    let result = read_all(store.open_read(&stored, Some(&kek)).await.unwrap()).await;
    assert!(is_integrity(&result), "{result:?}");
}

#[tokio::test]
async fn truncated_file_is_detected() {
    let (_dir, store, kek, stored, _data) = stored_encrypted().await;
    let path = object_file(&store, &stored);
    let file = std::fs::read(&path).unwrap();

    for cut in [file.len() - 1, 3 * SEALED_CHUNK, SEALED_CHUNK, 10, 0] {
        std::fs::write(&path, &file[..cut]).unwrap();
        let result = store.open_read(&stored, Some(&kek)).await;
        assert!(
            matches!(result, Err(BlobError::Integrity { .. })),
            "cut at {cut}: {:?}",
            result.err()
        );
    }
}

#[tokio::test]
async fn truncation_at_chunk_boundary_fails_final_flag() {
    // A blob of exactly 3 chunks, cut to 2 chunks, and a record that claims 2 chunks: the
    // lengths agree, so only the final-chunk flag in the nonce catches the cut.
    let (_dir, store) = new_store();
    let kek = KeyEncryptionKey::generate();
    let data = sample(3 * KIB_64);
    let stored = store
        .put(source(&data), &UNLIMITED, Some(&kek))
        .await
        .unwrap();
    let path = object_file(&store, &stored);
    let file = std::fs::read(&path).unwrap();
    std::fs::write(&path, &file[..2 * SEALED_CHUNK]).unwrap();

    let shortened = StoredBlob {
        size: 2 * KIB_64 as u64,
        ..stored
    };
    let range = read_all(
        store
            .read_range(&shortened, Some(&kek), KIB_64 as u64, 1)
            .await
            .unwrap(),
    )
    .await;
    assert!(is_integrity(&range), "{range:?}");
}

#[tokio::test]
async fn swapped_chunks_are_detected() {
    let (_dir, store, kek, stored, _data) = stored_encrypted().await;
    let path = object_file(&store, &stored);
    let mut file = std::fs::read(&path).unwrap();
    let (first, rest) = file.split_at_mut(SEALED_CHUNK);
    first.swap_with_slice(&mut rest[..SEALED_CHUNK]);
    std::fs::write(&path, &file).unwrap();

    let (yielded, result) = read_collecting(&store, &stored, Some(&kek)).await;
    assert!(
        matches!(result, Err(BlobError::Integrity { .. })),
        "{result:?}"
    );
    assert!(
        yielded.is_empty(),
        "no plaintext may come from a swapped chunk"
    );

    let range = read_all(
        store
            .read_range(&stored, Some(&kek), KIB_64 as u64, 10)
            .await
            .unwrap(),
    )
    .await;
    assert!(is_integrity(&range), "{range:?}");
}

#[tokio::test]
async fn chunk_from_other_blob_is_detected() {
    let (_dir, store, kek, stored, _data) = stored_encrypted().await;
    let other = store
        .put(source(&sample(3 * KIB_64 + 500)), &UNLIMITED, Some(&kek))
        .await
        .unwrap();
    let path = object_file(&store, &stored);
    let mut file = std::fs::read(&path).unwrap();
    let other_file = std::fs::read(object_file(&store, &other)).unwrap();
    file[..SEALED_CHUNK].copy_from_slice(&other_file[..SEALED_CHUNK]);
    std::fs::write(&path, &file).unwrap();

    let result = read_all(store.open_read(&stored, Some(&kek)).await.unwrap()).await;
    assert!(is_integrity(&result), "{result:?}");
}

#[tokio::test]
async fn altered_plain_blob_fails_hash_check() {
    let (_dir, store) = new_store();
    let data = sample(2 * KIB_64);
    let stored = store.put(source(&data), &UNLIMITED, None).await.unwrap();
    let path = object_file(&store, &stored);
    let mut file = std::fs::read(&path).unwrap();
    file[KIB_64 + 3] ^= 0x01;
    std::fs::write(&path, &file).unwrap();

    let result = read_all(store.open_read(&stored, None).await.unwrap()).await;
    assert!(is_integrity(&result), "{result:?}");

    std::fs::write(&path, &file[..KIB_64]).unwrap();
    let result = store.open_read(&stored, None).await;
    assert!(
        matches!(result, Err(BlobError::Integrity { .. })),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn altered_descriptor_is_detected() {
    let (_dir, store, kek, stored, _data) = stored_encrypted().await;
    let descriptor = stored.encryption.clone().unwrap();

    let mut wrapped = descriptor.clone();
    wrapped.wrapped_key[30] ^= 0x01;
    let mut prefix = descriptor.clone();
    prefix.nonce_prefix[0] ^= 0x01;
    for altered in [wrapped, prefix] {
        let blob = StoredBlob {
            encryption: Some(altered),
            ..stored.clone()
        };
        let result = store.open_read(&blob, Some(&kek)).await;
        assert!(
            matches!(result, Err(BlobError::Integrity { .. })),
            "{:?}",
            result.err()
        );
    }

    let mut algorithm = descriptor.clone();
    algorithm.algorithm = "XChaCha20-Poly1305/STREAM-BE32/1MiB".to_owned();
    let blob = StoredBlob {
        encryption: Some(algorithm),
        ..stored.clone()
    };
    let result = store.open_read(&blob, Some(&kek)).await;
    assert!(
        matches!(result, Err(BlobError::UnsupportedAlgorithm { .. })),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn wrong_or_missing_key_is_named() {
    let (_dir, store, kek, stored, _data) = stored_encrypted().await;
    let other = KeyEncryptionKey::generate();

    let result = store.open_read(&stored, Some(&other)).await;
    let Err(BlobError::WrongKey {
        expected, actual, ..
    }) = result
    else {
        panic!("expected WrongKey, got {:?}", result.err());
    };
    assert_eq!(expected, kek.key_id());
    assert_eq!(actual, other.key_id());

    let result = store.open_read(&stored, None).await;
    assert!(
        matches!(result, Err(BlobError::KeyRequired { .. })),
        "{:?}",
        result.err()
    );
}
