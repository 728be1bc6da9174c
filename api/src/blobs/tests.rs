//! Tests of writing and reading blobs: round trips, limits, failures, ranges, paths
//! and keys. Tampering is in `tests_tamper.rs`, memory use in `tests_memory.rs`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::aead::stream::DecryptorBE32;
use chacha20poly1305::{Key, XChaCha20Poly1305};
use futures::{Stream, StreamExt, stream};
use tempfile::TempDir;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use zeroize::Zeroizing;

use super::chunk::{self, TAG_SIZE};
use super::*;

const KIB_64: usize = 64 * 1024;
const UNLIMITED: BlobLimits = BlobLimits { max_size: u64::MAX };

/// Held for reading by tests that allocate a few MiB, and for writing by the test that
/// measures peak memory, so that the peak it reads comes from its own allocations only.
static MEMORY_LOCK: RwLock<()> = RwLock::const_new(());

pub(super) async fn memory_shared() -> RwLockReadGuard<'static, ()> {
    MEMORY_LOCK.read().await
}

pub(super) async fn memory_exclusive() -> RwLockWriteGuard<'static, ()> {
    MEMORY_LOCK.write().await
}

/// Returns `len` deterministic pseudo-random bytes (the BLAKE3 output stream of `len`).
pub(super) fn sample(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    let mut hasher = blake3::Hasher::new();
    hasher.update(&(len as u64).to_le_bytes());
    hasher.finalize_xof().fill(&mut bytes);
    bytes
}

/// Streams `data` in pieces of 7,000 bytes, a size that does not divide the chunk size.
pub(super) fn source(data: &[u8]) -> impl Stream<Item = Result<Bytes, io::Error>> + use<> {
    let pieces: Vec<Bytes> = data.chunks(7_000).map(Bytes::copy_from_slice).collect();
    stream::iter(pieces.into_iter().map(Ok))
}

pub(super) async fn read_all(stream: BlobStream) -> Result<Vec<u8>, BlobError> {
    let mut stream = stream;
    let mut data = Vec::new();
    while let Some(piece) = stream.next().await {
        data.extend_from_slice(&piece?);
    }
    Ok(data)
}

/// Lists every file below `dir`, recursively.
pub(super) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

pub(super) fn new_store() -> (TempDir, BlobStore) {
    let dir = TempDir::new().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    (dir, store)
}

fn assert_no_files(store: &BlobStore) {
    assert_eq!(
        files_under(&store.dir().join("objects")),
        Vec::<PathBuf>::new()
    );
    assert_eq!(files_under(&store.dir().join("tmp")), Vec::<PathBuf>::new());
}

const ROUND_TRIP_SIZES: [usize; 6] = [0, 1, KIB_64 - 1, KIB_64, KIB_64 + 1, 5 * 1024 * 1024 + 123];

async fn check_round_trip(kek: Option<&KeyEncryptionKey>) {
    let _memory = memory_shared().await;
    let (_dir, store) = new_store();
    for size in ROUND_TRIP_SIZES {
        let data = sample(size);
        let stored = store.put(source(&data), &UNLIMITED, kek).await.unwrap();

        assert_eq!(stored.size, size as u64, "size {size}");
        assert_eq!(
            stored.content_hash.as_bytes(),
            blake3::hash(&data).as_bytes(),
            "size {size}"
        );
        assert_eq!(stored.encryption.is_some(), kek.is_some(), "size {size}");

        let on_disk = std::fs::read(store.object_path(&stored.storage_key)).unwrap();
        match kek {
            None => assert_eq!(on_disk, data, "size {size}"),
            Some(_) => {
                assert_eq!(
                    on_disk.len() as u64,
                    chunk::sealed_len(size as u64),
                    "size {size}"
                );
                if size >= 16 {
                    assert!(
                        !on_disk.windows(16).any(|w| w == &data[..16]),
                        "size {size}: plaintext on disk"
                    );
                }
            }
        }

        let read = read_all(store.open_read(&stored, kek).await.unwrap())
            .await
            .unwrap();
        assert_eq!(read.len(), data.len(), "size {size}");
        assert!(read == data, "size {size}: content differs");
    }
    assert_eq!(files_under(&store.dir().join("tmp")), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn round_trip_plain() {
    check_round_trip(None).await;
}

#[tokio::test]
async fn round_trip_encrypted() {
    let kek = KeyEncryptionKey::generate();
    check_round_trip(Some(&kek)).await;
}

#[tokio::test]
async fn encrypted_descriptor_holds_only_wrapped_key() {
    let (_dir, store) = new_store();
    let kek = KeyEncryptionKey::generate();
    let stored = store
        .put(source(&sample(10)), &UNLIMITED, Some(&kek))
        .await
        .unwrap();
    let descriptor = stored.encryption.unwrap();

    assert_eq!(descriptor.algorithm, "XChaCha20-Poly1305/STREAM-BE32/64KiB");
    assert_eq!(descriptor.key_id, kek.key_id());
    assert_eq!(descriptor.nonce_prefix.len(), 19);
    assert_eq!(descriptor.wrapped_key.len(), 24 + 32 + 16);
}

#[tokio::test]
async fn too_large_stops_early_and_leaves_no_file() {
    for encrypted in [false, true] {
        let (_dir, store) = new_store();
        let kek = KeyEncryptionKey::generate();
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        // 1,000 pieces of 10,000 bytes against a limit of 100,000 bytes.
        let source = stream::iter(0..1_000).map(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, io::Error>(Bytes::from(vec![7u8; 10_000]))
        });
        let limits = BlobLimits { max_size: 100_000 };

        let result = store.put(source, &limits, encrypted.then_some(&kek)).await;

        assert!(
            matches!(
                result,
                Err(BlobError::TooLarge {
                    limit: 100_000,
                    received: 110_000
                })
            ),
            "encrypted {encrypted}: {result:?}"
        );
        assert_eq!(pulled.load(Ordering::SeqCst), 11, "encrypted {encrypted}");
        assert_no_files(&store);
    }
}

#[tokio::test]
async fn size_equal_to_limit_is_stored() {
    let (_dir, store) = new_store();
    let data = sample(100_000);
    let limits = BlobLimits { max_size: 100_000 };
    let stored = store.put(source(&data), &limits, None).await.unwrap();
    assert_eq!(stored.size, 100_000);
}

#[tokio::test]
async fn failing_source_leaves_no_file() {
    for encrypted in [false, true] {
        let (_dir, store) = new_store();
        let kek = KeyEncryptionKey::generate();
        let pieces = vec![
            Ok(Bytes::from(sample(KIB_64 * 3))),
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "client went away",
            )),
        ];

        let result = store
            .put(stream::iter(pieces), &UNLIMITED, encrypted.then_some(&kek))
            .await;

        let Err(BlobError::Source { source }) = result else {
            panic!("encrypted {encrypted}: expected a source error, got {result:?}");
        };
        assert_eq!(source.to_string(), "client went away");
        assert_no_files(&store);
    }
}

#[tokio::test]
async fn cancelled_put_leaves_no_file() {
    let (_dir, store) = new_store();
    let first = stream::iter([Ok::<_, io::Error>(Bytes::from(sample(KIB_64 * 2)))]);
    let source = first.chain(stream::pending());

    let result = tokio::time::timeout(
        Duration::from_millis(200),
        store.put(source, &UNLIMITED, None),
    )
    .await;

    assert!(
        result.is_err(),
        "the put should still be waiting on its source"
    );
    assert_no_files(&store);
}

async fn check_ranges(kek: Option<&KeyEncryptionKey>) {
    let (_dir, store) = new_store();
    let size = 3 * KIB_64 + 100;
    let data = sample(size);
    let stored = store.put(source(&data), &UNLIMITED, kek).await.unwrap();
    let c = KIB_64;
    let ranges = [
        (0, 0),
        (0, 1),
        (0, c),
        (c - 1, 1),
        (c - 1, 2),
        (c, c),
        (c + 1, c),
        (2 * c - 1, c + 2),
        (3 * c, 100),
        (3 * c + 99, 1),
        (size, 0),
        (0, size),
        (5, size - 5),
    ];
    for (start, len) in ranges {
        let stream = store
            .read_range(&stored, kek, start as u64, len as u64)
            .await
            .unwrap();
        let read = read_all(stream).await.unwrap();
        assert!(read == data[start..start + len], "range {start}+{len}");
    }

    for (start, len) in [(size, 1), (0, size + 1), (u64::MAX as usize, 2)] {
        let result = store
            .read_range(&stored, kek, start as u64, len as u64)
            .await;
        assert!(
            matches!(result, Err(BlobError::RangeNotSatisfiable { .. })),
            "range {start}+{len}: {:?}",
            result.err()
        );
    }
}

#[tokio::test]
async fn ranges_plain() {
    check_ranges(None).await;
}

#[tokio::test]
async fn ranges_encrypted() {
    let kek = KeyEncryptionKey::generate();
    check_ranges(Some(&kek)).await;
}

#[tokio::test]
async fn storage_key_ignores_client_file_name() {
    let (dir, store) = new_store();
    let client_file_name = "../../etc/passwd";

    let rejected = StorageKey::parse(client_file_name);
    assert!(
        matches!(rejected, Err(BlobError::InvalidStorageKey { .. })),
        "{rejected:?}"
    );
    assert!(StorageKey::parse("0123456789ABCDEF0123456789abcdef").is_err());
    assert!(StorageKey::parse("0123456789abcdef0123456789abcdef").is_ok());

    // The API takes no file name, so the stored path is built from the generated key only.
    let stored = store
        .put(source(b"secret"), &UNLIMITED, None)
        .await
        .unwrap();
    let key = stored.storage_key.as_str();
    let expected = dir.path().join("objects").join(&key[..2]).join(key);
    assert_eq!(files_under(&dir.path().join("objects")), vec![expected]);
    assert!(!key.contains(client_file_name));
    assert_eq!(StorageKey::parse(key).unwrap(), stored.storage_key);
}

#[tokio::test]
async fn delete_removes_and_is_repeatable() {
    let (_dir, store) = new_store();
    let stored = store
        .put(source(&sample(1_000)), &UNLIMITED, None)
        .await
        .unwrap();

    assert!(store.delete(&stored.storage_key).await.unwrap());
    assert!(!store.delete(&stored.storage_key).await.unwrap());

    let result = store.open_read(&stored, None).await;
    assert!(
        matches!(result, Err(BlobError::NotFound { .. })),
        "{:?}",
        result.err()
    );
    assert_no_files(&store);
}

#[tokio::test]
async fn chunks_decrypt_with_rustcrypto_stream() {
    let (_dir, store) = new_store();
    let kek = KeyEncryptionKey::generate();
    let data = sample(2 * KIB_64 + 10);
    let stored = store
        .put(source(&data), &UNLIMITED, Some(&kek))
        .await
        .unwrap();
    let descriptor = stored.encryption.clone().unwrap();
    let on_disk = std::fs::read(store.object_path(&stored.storage_key)).unwrap();

    // Recover the data key through the same unwrap a read uses, then hand it to the
    // independent STREAM decryptor.
    let data_key = kek.unwrap_data_key_for_test(&stored.storage_key, &descriptor);
    let aead = XChaCha20Poly1305::new(Key::from_slice(&data_key[..]));
    let mut decryptor = DecryptorBE32::from_aead(aead, descriptor.nonce_prefix[..].into());
    let sealed: Vec<&[u8]> = on_disk.chunks(KIB_64 + TAG_SIZE).collect();
    let mut plaintext = Vec::new();
    plaintext.extend(decryptor.decrypt_next(sealed[0]).unwrap());
    plaintext.extend(decryptor.decrypt_next(sealed[1]).unwrap());
    plaintext.extend(decryptor.decrypt_last(sealed[2]).unwrap());

    assert!(
        plaintext == data,
        "STREAM decryption differs from the input"
    );
}

#[test]
fn key_file_round_trip_and_length_check() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("kek");
    let kek = KeyEncryptionKey::generate();

    kek.save_new(&path).unwrap();
    let loaded = KeyEncryptionKey::load(&path).unwrap();
    assert_eq!(loaded.key_id(), kek.key_id());
    assert!(
        kek.save_new(&path).is_err(),
        "save_new must not overwrite a key file"
    );

    let short = dir.path().join("short");
    std::fs::write(&short, [1u8; 31]).unwrap();
    let result = KeyEncryptionKey::load(&short);
    assert!(
        matches!(result, Err(BlobError::InvalidKeyFile { length: 31, .. })),
        "{result:?}"
    );

    let fixed = KeyEncryptionKey::from_bytes(Zeroizing::new([9u8; 32]));
    assert!(fixed.key_id().starts_with("kek-"));
    assert_eq!(fixed.key_id().len(), 4 + 16);
    assert!(
        !format!("{fixed:?}").contains("9, 9"),
        "Debug must not print the key"
    );
}

/// Writes an unreferenced document and a temp file into the store in `dir`, the
/// document `age` old, and returns their paths.
fn leave_leftovers(dir: &Path, age: Duration) -> (PathBuf, PathBuf) {
    let part = dir.join("tmp").join(format!("{}.part", "a".repeat(32)));
    let object = dir.join("objects").join("bb").join("b".repeat(32));
    for path in [&part, &object] {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"left over").unwrap();
    }
    let modified = std::time::SystemTime::now() - age;
    for path in [&part, &object] {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(modified).unwrap();
    }
    (part, object)
}

#[test]
fn own_store_removes_leftovers_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (part, object) = leave_leftovers(dir.path(), Duration::ZERO);

    let store = BlobStore::open(dir.path()).unwrap();
    assert!(!part.exists());
    assert_eq!(store.remove_unreferenced(|_| false).unwrap(), 1);
    assert!(!object.exists());
}

#[test]
fn shared_store_keeps_documents_and_recent_parts() {
    let dir = tempfile::tempdir().unwrap();
    let (part, object) = leave_leftovers(dir.path(), Duration::from_secs(60));

    let store = BlobStore::open_shared(dir.path()).unwrap();
    assert!(part.exists(), "another server may still be writing it");
    assert_eq!(store.remove_unreferenced(|_| false).unwrap(), 0);
    assert!(object.exists());

    let old = SHARED_LEFTOVER_AGE + Duration::from_secs(60);
    let (part, object) = leave_leftovers(dir.path(), old);
    let store = BlobStore::open_shared(dir.path()).unwrap();
    assert!(!part.exists());
    assert_eq!(store.remove_unreferenced(|_| false).unwrap(), 0);
    assert!(object.exists(), "another ledger may refer to it");
}

#[test]
fn shared_store_needs_existing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-mounted");

    let result = BlobStore::open_shared(&missing);

    assert!(
        matches!(&result, Err(BlobError::SharedFolderMissing { path }) if *path == missing),
        "{:?}",
        result.err()
    );
    assert!(!missing.exists());
}

#[test]
fn stray_folders_do_not_stop_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let stray_part = dir.path().join("tmp").join("stuck.part");
    let stray_object = dir.path().join("objects").join("ab").join("a".repeat(32));
    std::fs::create_dir_all(&stray_part).unwrap();
    std::fs::create_dir_all(&stray_object).unwrap();

    let store = BlobStore::open(dir.path()).unwrap();
    assert_eq!(store.remove_unreferenced(|_| false).unwrap(), 0);

    assert!(stray_part.is_dir());
    assert!(stray_object.is_dir());
}
