//! A file written on a blocking thread of its own, fed with buffers over a channel.
//!
//! Receiving and sealing the next bytes overlap with hashing and writing the previous
//! ones on the other thread. Plain documents pass their received buffers through
//! without a copy ([`FileSink::send`]); sealed chunks are gathered into larger buffers
//! ([`FileSink::write_all`]). After each finished stretch, the writing thread requests
//! the kernel's write-back of it, so the device works while the rest arrives and the
//! fsync at the end waits for the last stretch only.
//!
//! Buffers in flight count against two budgets: one of the upload and one of the whole
//! store. A lone upload can thus keep a deep pipeline, while any number of concurrent
//! uploads share a fixed amount of memory.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

/// Size of the buffers handed to the writing thread.
const BUFFER_SIZE: usize = 256 * 1024;

/// Maximum count of buffers in flight between the async side and the writing thread.
/// The budgets below bound their bytes.
const BUFFERS_IN_FLIGHT: usize = 64;

/// Maximum bytes in flight between one upload's async side and its writing thread,
/// counted in KiB. Received buffers vary in size, so the count of buffers alone does not
/// bound the memory of an upload.
const UPLOAD_KIB_IN_FLIGHT: u32 = 4 * 1024;

/// Maximum bytes in flight in all the uploads of a store together, counted in KiB.
pub(super) const STORE_KIB_IN_FLIGHT: usize = 16 * 1024;

/// Bytes written between two requests to start the write-back.
const WRITEBACK_STEP: u64 = 8 * 1024 * 1024;

/// A buffer on its way to the writing thread, with its share of both budgets, which
/// return when it is dropped: once written, or unwritten when the thread stopped early.
struct InFlight {
    bytes: Bytes,
    _upload: OwnedSemaphorePermit,
    _store: OwnedSemaphorePermit,
}

/// The async side of a file being written.
pub(super) struct FileSink {
    buffer: BytesMut,
    sender: Option<mpsc::Sender<InFlight>>,
    /// Permits of [`UPLOAD_KIB_IN_FLIGHT`].
    upload_budget: Arc<Semaphore>,
    /// Permits of [`STORE_KIB_IN_FLIGHT`], shared with the store's other uploads.
    store_budget: Arc<Semaphore>,
    writer: JoinHandle<std::io::Result<Option<blake3::Hash>>>,
}

impl FileSink {
    /// Starts the writing thread for `file`. With `hash`, the thread also computes the
    /// BLAKE3 hash of everything written, which [`FileSink::finish`] returns.
    /// `store_budget` is the store's semaphore of [`STORE_KIB_IN_FLIGHT`] permits.
    pub(super) fn new(file: File, hash: bool, store_budget: Arc<Semaphore>) -> Self {
        let (sender, mut receiver) = mpsc::channel::<InFlight>(BUFFERS_IN_FLIGHT);
        let writer = tokio::task::spawn_blocking(move || {
            let mut file = file;
            let mut hasher = hash.then(blake3::Hasher::new);
            let (mut written, mut written_back) = (0_u64, 0_u64);
            while let Some(in_flight) = receiver.blocking_recv() {
                let bytes = &in_flight.bytes;
                if let Some(hasher) = &mut hasher {
                    hasher.update(bytes);
                }
                file.write_all(bytes)?;
                written += bytes.len() as u64;
                drop(in_flight);

                if written - written_back >= WRITEBACK_STEP {
                    start_writeback(&file, written_back, written - written_back);
                    written_back = written;
                }
            }
            file.sync_all()?;
            Ok(hasher.map(|hasher| hasher.finalize()))
        });
        Self {
            buffer: BytesMut::with_capacity(BUFFER_SIZE),
            sender: Some(sender),
            upload_budget: Arc::new(Semaphore::new(UPLOAD_KIB_IN_FLIGHT as usize)),
            store_budget,
            writer,
        }
    }

    /// Appends `data`, handing full buffers to the writing thread.
    pub(super) async fn write_all(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let take = (BUFFER_SIZE - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == BUFFER_SIZE {
                self.send_buffer().await?;
            }
        }
        Ok(())
    }

    /// Hands `bytes` to the writing thread as they are, after anything buffered.
    pub(super) async fn send(&mut self, bytes: Bytes) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            self.send_buffer().await?;
        }
        self.send_bytes(bytes).await
    }

    async fn send_buffer(&mut self) -> std::io::Result<()> {
        let full = std::mem::replace(&mut self.buffer, BytesMut::with_capacity(BUFFER_SIZE));
        self.send_bytes(full.freeze()).await
    }

    async fn send_bytes(&mut self, bytes: Bytes) -> std::io::Result<()> {
        let kib = u32::try_from(bytes.len().div_ceil(1024)).unwrap_or(u32::MAX);
        let permits = kib.clamp(1, UPLOAD_KIB_IN_FLIGHT);
        // The upload's own budget comes first, so a sink that waits for it keeps none of
        // the store's budget from the other uploads.
        let upload = Arc::clone(&self.upload_budget)
            .acquire_many_owned(permits)
            .await
            .expect("the budget is never closed");
        let store = Arc::clone(&self.store_budget)
            .acquire_many_owned(permits)
            .await
            .expect("the budget is never closed");
        let in_flight = InFlight {
            bytes,
            _upload: upload,
            _store: store,
        };
        let sender = self.sender.as_ref().expect("the sender lives until finish");
        if sender.send(in_flight).await.is_err() {
            // The writing thread stopped early, which only a write error causes.
            return Err(self.stop().await.err().unwrap_or_else(|| {
                std::io::Error::other("the file writer stopped before the end")
            }));
        }
        Ok(())
    }

    /// Writes what is buffered, fsyncs the file and waits for the writing thread.
    /// Returns the hash of everything written when the sink was made with `hash`.
    pub(super) async fn finish(mut self) -> std::io::Result<Option<blake3::Hash>> {
        if !self.buffer.is_empty() {
            self.send_buffer().await?;
        }
        self.stop().await
    }

    async fn stop(&mut self) -> std::io::Result<Option<blake3::Hash>> {
        self.sender = None;
        (&mut self.writer)
            .await
            .map_err(|error| std::io::Error::other(format!("the file writer failed: {error}")))?
    }
}

/// Starts the write-back of `len` bytes of `file` from `offset` without waiting. The
/// fsync at the end still makes the pages durable, so a failure here costs only speed
/// and is ignored.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    // In Linux's mm/fadvise.c, "don't need" starts the write-back of the range's dirty
    // pages and drops only its clean pages, so pages being written stay in the cache.
    let advice = rustix::fs::Advice::DontNeed;
    if let Err(error) = rustix::fs::fadvise(file, offset, std::num::NonZeroU64::new(len), advice) {
        tracing::debug!(%error, offset, len, "starting the write-back failed");
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}
