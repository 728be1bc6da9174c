//! The embedded backend: the ledger in a RocksDB database inside one data directory.
//!
//! Column families: `events` (key: chain and position, value: hash and stored bytes),
//! `idempotency` (key: idempotency key, value: where the original append landed) and
//! `meta` (format marker, chain count, each chain's head, Merkle index size and last
//! checkpoint) and `merkle` (roots of large perfect subtrees of each chain's Merkle
//! tree). A lock file keeps a second
//! process out of the directory. Appends go through one writer thread that
//! group-commits them; reads go straight to RocksDB.

mod check;
mod checkpoints;
mod commit;
mod consistency;
mod import;
mod open;
mod read;
mod subscribe;
mod tree;
mod upstream;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use consign_schemas::{ChainId, EventHash, IdempotencyKey, Position};
use rocksdb::DB;
use tokio::sync::{oneshot, watch};

use crate::checkpoint::CheckpointPolicy;
use crate::clock::Clock;
use crate::error::{LedgerError, READ, READ_WRITE};
use crate::keys::Head;
use crate::merkle::MerkleAccumulator;
use crate::record::{AppendRequest, Appended};

pub use consistency::IndexComparison;
pub use subscribe::Subscription;
pub use tree::TreeHead;
pub(crate) use upstream::{Forward, Published, Publisher};
pub use upstream::{ImportRecord, Imported};

pub(crate) const CF_EVENTS: &str = "events";
pub(crate) const CF_IDEMPOTENCY: &str = "idempotency";
pub(crate) const CF_META: &str = "meta";

/// Settings for opening an embedded ledger.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Number of chains for a new ledger; an existing ledger keeps its own, and a
    /// different explicit value is rejected.
    pub chains: Option<u32>,
    /// Fsync every group commit before acknowledging it. Turning this off trades
    /// durability for speed and is meant for generating test fixtures only.
    pub sync: bool,
    /// Maximum number of events written by one group commit.
    pub max_group_events: usize,
    /// Opens an existing ledger without writing anything: no directory or database is
    /// created, RocksDB opens read-only, and the write-ahead log must be intact. For
    /// verification and dumps, including by a user with read access only.
    pub read_only: bool,
    /// Maximum time the writer waits for the appenders of the previous group to send
    /// their next requests before it commits a smaller group.
    pub group_wait: Duration,
    /// Source of the sequencer times written into envelopes.
    pub clock: Clock,
    /// When and with which key the writer signs checkpoints; `None` signs none.
    pub checkpoints: Option<CheckpointPolicy>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            chains: None,
            sync: true,
            max_group_events: 8192,
            group_wait: Duration::from_micros(500),
            read_only: false,
            clock: Clock::system(),
            checkpoints: None,
        }
    }
}

/// State shared by the handle, the writer thread and subscriptions.
pub(crate) struct Shared {
    pub(crate) db: DB,
    pub(crate) dir: PathBuf,
    pub(crate) chain_count: u32,
    /// Committed heads, updated by the writer after each durable group commit.
    pub(crate) heads: Mutex<HashMap<ChainId, Head>>,
    /// Committed Merkle trees of a writable ledger, updated with the heads.
    pub(crate) trees: Mutex<HashMap<ChainId, MerkleAccumulator>>,
    /// Next position of each chain, for subscriptions to wait on.
    pub(crate) watchers: HashMap<ChainId, watch::Sender<Position>>,
    /// The reason of the failed write after which the writer rejects every append.
    pub(crate) write_failure: Mutex<Option<String>>,
}

pub(crate) struct Pending {
    pub(crate) request: AppendRequest,
    pub(crate) reply: oneshot::Sender<Result<Appended, LedgerError>>,
}

/// A request for a checkpoint covering every committed event of a chain.
pub(crate) struct ForcedCheckpoint {
    pub(crate) chain: ChainId,
    /// The position of the covering checkpoint, or `None` for an empty chain.
    pub(crate) reply: oneshot::Sender<Result<Option<Position>, LedgerError>>,
}

/// A request to the writer thread.
pub(crate) enum Work {
    Append(Pending),
    Checkpoint(ForcedCheckpoint),
    Import(upstream::PendingImport),
}

/// A handle on the writer for the Kafka backend's threads: imports of events committed
/// upstream, and appends of requests forwarded by other processes.
pub(crate) struct WriterHandle {
    sender: mpsc::Sender<Work>,
}

impl WriterHandle {
    /// Writes `records` of `chain`, in partition order, and blocks until they are
    /// written. Events the copy already has are checked and skipped.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Replica`] for the first record that does not extend the chain
    /// (the records before it are written), storage failures and
    /// [`LedgerError::Closed`].
    pub(crate) fn import(
        &self,
        chain: ChainId,
        records: Vec<ImportRecord>,
    ) -> Result<Imported, LedgerError> {
        let (reply, receiver) = oneshot::channel();
        self.sender
            .send(Work::Import(upstream::PendingImport {
                chain,
                records,
                reply,
            }))
            .map_err(|_| LedgerError::Closed)?;
        receiver.blocking_recv().map_err(|_| LedgerError::Closed)?
    }

    /// Queues an append and returns the receiver of its outcome, without waiting.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Closed`].
    pub(crate) fn enqueue(
        &self,
        request: AppendRequest,
    ) -> Result<oneshot::Receiver<Result<Appended, LedgerError>>, LedgerError> {
        let (reply, receiver) = oneshot::channel();
        self.sender
            .send(Work::Append(Pending { request, reply }))
            .map_err(|_| LedgerError::Closed)?;
        Ok(receiver)
    }
}

/// An open embedded ledger. Dropping it stops the writer after the appends already
/// queued and releases the data directory.
pub struct EmbeddedLedger {
    shared: Arc<Shared>,
    sender: Option<mpsc::Sender<Work>>,
    writer: Option<JoinHandle<()>>,
    /// Stops what feeds the writer from outside (the Kafka backend's threads), before
    /// the writer itself stops.
    on_close: Mutex<Vec<Box<dyn FnOnce() + Send>>>,
    /// Sends appends for chains sequenced in another process there (Kafka backend).
    forward: OnceLock<Arc<dyn Forward>>,
    /// Held for the lifetime of the ledger: the OS lock on it keeps other processes out.
    /// `None` for a read-only ledger on a medium where the lock file cannot be created.
    _lock: Option<File>,
}

impl std::fmt::Debug for EmbeddedLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLedger")
            .field("dir", &self.shared.dir)
            .field("chains", &self.shared.chain_count)
            .finish()
    }
}

impl EmbeddedLedger {
    /// Checks that `dir` has no ledger database without its `CURRENT` file, which an
    /// open for writing would replace with an empty ledger. Callers run it before they
    /// add anything else to a data directory.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Corrupt`] naming a database file found without `CURRENT`.
    pub fn check_files(dir: impl AsRef<Path>) -> Result<(), LedgerError> {
        open::check_current_present(dir.as_ref())
    }

    /// Opens the ledger in `dir`, creating the directory and database if missing.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Locked`] when another process has the directory open,
    /// [`LedgerError::DataDir`] when the directory cannot be created or accessed,
    /// [`LedgerError::Corrupt`] when RocksDB reports corruption, and
    /// [`LedgerError::ChainCountMismatch`] when `options.chains` differs from the
    /// stored count.
    pub fn open(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self, LedgerError> {
        let read_only = options.read_only;
        let ledger = Self::open_with(dir.as_ref(), options, None)?;
        if !read_only {
            let stored = ledger
                .shared
                .db
                .get_cf(open::meta_family(&ledger.shared.db), upstream::UPSTREAM_KEY)
                .map_err(|error| LedgerError::from_rocksdb("open", error))?;
            if let Some(stored) = stored {
                return Err(LedgerError::DataDir {
                    dir: ledger.shared.dir.clone(),
                    access: READ_WRITE,
                    cause: std::io::Error::other(format!(
                        "it contains a copy of the ledger in {}, which only that upstream may \
                         extend; give --kafka to use it",
                        String::from_utf8_lossy(&stored)
                    )),
                });
            }
        }
        Ok(ledger)
    }

    /// Opens the ledger with a publisher that must commit every group upstream before
    /// it is written here.
    pub(crate) fn open_with(
        dir: &Path,
        options: EmbeddedOptions,
        publisher: Option<Box<dyn Publisher>>,
    ) -> Result<Self, LedgerError> {
        let opened = open::open(dir, &options)?;
        let shared = Arc::new(opened.shared);
        let checkpoints = checkpoints::Checkpoints::load(
            &shared,
            options.checkpoints.clone().filter(|_| !options.read_only),
        )?;

        let (sender, receiver) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("consign-ledger-writer".to_owned())
            .spawn(move || writer::run(writer_shared, receiver, options, checkpoints, publisher))
            .map_err(|source| LedgerError::DataDir {
                dir: shared.dir.clone(),
                cause: source,
                access: READ,
            })?;

        Ok(Self {
            shared,
            sender: Some(sender),
            writer: Some(writer),
            on_close: Mutex::new(Vec::new()),
            forward: OnceLock::new(),
            _lock: opened.lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn chain_count(&self) -> u32 {
        self.shared.chain_count
    }

    /// Returns every chain of this ledger, in order.
    pub fn chains(&self) -> impl Iterator<Item = ChainId> + use<> {
        (0..self.shared.chain_count).map(ChainId::new)
    }

    /// Appends a batch of events to one chain and returns once it is durable.
    ///
    /// Concurrent calls share one fsync. A request whose idempotency key is already
    /// present writes nothing and returns the original positions with `replayed` set.
    ///
    /// # Errors
    ///
    /// [`LedgerError::UnknownChain`], [`LedgerError::EmptyAppend`], storage failures
    /// (nothing of the request is written), and [`LedgerError::Closed`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not withdraw the request: it may still become durable.
    /// Retry with the same idempotency key to learn its positions.
    pub async fn append(&self, request: AppendRequest) -> Result<Appended, LedgerError> {
        if let Some(forward) = self.forwarding(&request)? {
            return forward.forward(self, request).await;
        }
        let receiver = self.enqueue(request)?;
        receiver.await.map_err(|_| LedgerError::Closed)?
    }

    /// Appends like [`Self::append`], blocking the calling thread.
    ///
    /// # Panics
    ///
    /// Panics when called from inside an async runtime's worker thread.
    pub fn append_blocking(&self, request: AppendRequest) -> Result<Appended, LedgerError> {
        if let Some(forward) = self.forwarding(&request)? {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| LedgerError::Storage {
                    operation: "append",
                    reason: format!("cannot start a runtime to forward the append: {error}"),
                })?;
            return runtime.block_on(forward.forward(self, request));
        }
        let receiver = self.enqueue(request)?;
        receiver.blocking_recv().map_err(|_| LedgerError::Closed)?
    }

    /// Returns the forwarder when `request`'s chain is sequenced in another process.
    /// An append to a home chain whose sequencer is still starting goes to the writer,
    /// which rejects it at once as unavailable, rather than waiting in another process.
    fn forwarding(&self, request: &AppendRequest) -> Result<Option<Arc<dyn Forward>>, LedgerError> {
        let Some(forward) = self.forward.get() else {
            return Ok(None);
        };
        self.check_chain(request.chain)?;
        if request.events.is_empty() {
            return Err(LedgerError::EmptyAppend);
        }
        Ok((!forward.home(request.chain)).then(|| Arc::clone(forward)))
    }

    /// True when appends to `chain` are sequenced by this process: always on the
    /// embedded backend; on Kafka, while this process runs the chain's sequencer.
    /// Work that must happen once per chain, such as sending e-mails, runs only
    /// where this is true.
    pub fn sequences_here(&self, chain: ChainId) -> bool {
        self.forward
            .get()
            .is_none_or(|forward| forward.sequences(chain))
    }

    /// Returns true when `chain` belongs to this process. That is always so on the
    /// embedded backend. On Kafka, the process was started to sequence it and was not
    /// fenced from it, even if its sequencer is still starting. New deliveries go on
    /// such chains.
    pub fn is_home_chain(&self, chain: ChainId) -> bool {
        self.forward.get().is_none_or(|forward| forward.home(chain))
    }

    /// Sends appends for chains sequenced elsewhere through `forward`.
    pub(crate) fn set_forward(&self, forward: Arc<dyn Forward>) {
        let _ = self.forward.set(forward);
    }

    /// Returns the placement of the append that used `key`, when this copy has it.
    ///
    /// # Errors
    ///
    /// Storage failures and a malformed entry.
    pub fn find_idempotent(&self, key: &IdempotencyKey) -> Result<Option<Appended>, LedgerError> {
        let db = &self.shared.db;
        let value = db
            .get_cf(open::idempotency_family(db), key.as_str().as_bytes())
            .map_err(|error| LedgerError::from_rocksdb("read", error))?;
        let Some(value) = value else {
            return Ok(None);
        };
        let (chain, first, count) =
            crate::keys::decode_idempotency(&value).ok_or_else(|| LedgerError::Corrupt {
                dir: self.shared.dir.clone(),
                reason: format!("idempotency entry for {:?} is malformed", key.as_str()),
            })?;
        let events = read::read_placements(&self.shared, chain, first, count)?;
        Ok(Some(Appended {
            chain,
            events,
            replayed: true,
        }))
    }

    fn enqueue(
        &self,
        request: AppendRequest,
    ) -> Result<oneshot::Receiver<Result<Appended, LedgerError>>, LedgerError> {
        self.check_chain(request.chain)?;
        if request.events.is_empty() {
            return Err(LedgerError::EmptyAppend);
        }

        let (reply, receiver) = oneshot::channel();
        let sender = self.sender.as_ref().ok_or(LedgerError::Closed)?;
        sender
            .send(Work::Append(Pending { request, reply }))
            .map_err(|_| LedgerError::Closed)?;
        Ok(receiver)
    }

    /// Makes sure a signed checkpoint covers every event of `chain` committed before
    /// the call, signing one now if the last does not. Returns the position of that
    /// checkpoint, or `None` when the chain is empty.
    ///
    /// # Errors
    ///
    /// [`LedgerError::NoCheckpointSigner`] when the ledger was opened without a
    /// checkpoint policy, storage failures and [`LedgerError::Closed`].
    pub async fn checkpoint(&self, chain: ChainId) -> Result<Option<Position>, LedgerError> {
        self.check_chain(chain)?;
        let (reply, receiver) = oneshot::channel();
        let sender = self.sender.as_ref().ok_or(LedgerError::Closed)?;
        sender
            .send(Work::Checkpoint(ForcedCheckpoint { chain, reply }))
            .map_err(|_| LedgerError::Closed)?;
        receiver.await.map_err(|_| LedgerError::Closed)?
    }

    /// Returns a handle that imports events committed upstream. The writer keeps
    /// running while a handle exists, so the handle must be dropped, by a hook given
    /// to [`Self::on_close`], for the ledger to close.
    pub(crate) fn writer_handle(&self) -> Result<WriterHandle, LedgerError> {
        let sender = self.sender.as_ref().ok_or(LedgerError::Closed)?;
        Ok(WriterHandle {
            sender: sender.clone(),
        })
    }

    /// Returns the upstream offset after the last record imported into `chain`.
    ///
    /// # Errors
    ///
    /// [`LedgerError::UnknownChain`] and storage failures.
    pub fn upstream_offset(&self, chain: ChainId) -> Result<Option<i64>, LedgerError> {
        self.check_chain(chain)?;
        let value = self
            .shared
            .db
            .get_cf(
                open::meta_family(&self.shared.db),
                upstream::offset_key(chain),
            )
            .map_err(|error| LedgerError::from_rocksdb("read", error))?;
        Ok(value
            .and_then(|value| <[u8; 8]>::try_from(value.as_slice()).ok())
            .map(i64::from_be_bytes))
    }

    /// Marks this store as the copy of `upstream`, or checks that it is one. A store
    /// that contains events of its own, or copies another upstream, is rejected.
    pub(crate) fn claim_upstream(&self, upstream: &str) -> Result<(), LedgerError> {
        let db = &self.shared.db;
        let meta = open::meta_family(db);
        let stored = db
            .get_cf(meta, upstream::UPSTREAM_KEY)
            .map_err(|error| LedgerError::from_rocksdb("open", error))?;
        let reject = |reason: String| LedgerError::DataDir {
            dir: self.shared.dir.clone(),
            cause: std::io::Error::other(reason),
            access: READ_WRITE,
        };
        match stored {
            Some(stored) if stored == upstream.as_bytes() => Ok(()),
            Some(stored) => Err(reject(format!(
                "it contains the copy of {}, not of {upstream}; give each upstream its own \
                 --data-dir",
                String::from_utf8_lossy(&stored)
            ))),
            None => {
                let events: u64 = self
                    .chains()
                    .map(|chain| self.next_position(chain).map(Position::get))
                    .sum::<Result<u64, LedgerError>>()?;
                if events > 0 {
                    return Err(reject(format!(
                        "it contains an embedded ledger of {events} events, not a copy of \
                         {upstream}; use a new --data-dir for the Kafka ledger"
                    )));
                }
                db.put_cf(meta, upstream::UPSTREAM_KEY, upstream.as_bytes())
                    .map_err(|error| LedgerError::from_rocksdb("open", error))
            }
        }
    }

    /// Runs `stop` when the ledger closes, before its writer stops.
    pub(crate) fn on_close(&self, stop: Box<dyn FnOnce() + Send>) {
        self.on_close
            .lock()
            .expect("close hooks lock poisoned")
            .push(stop);
    }

    /// Returns the position of the last checkpoint event of `chain`, if any.
    ///
    /// # Errors
    ///
    /// [`LedgerError::UnknownChain`] and storage failures.
    pub fn last_checkpoint(&self, chain: ChainId) -> Result<Option<Position>, LedgerError> {
        self.check_chain(chain)?;
        checkpoints::last_checkpoint(&self.shared.db, &self.shared.dir, chain)
    }

    /// Returns the reason of the failed write after which every append is rejected
    /// until the ledger is opened again, or `None` while appends are taken.
    pub fn write_failure(&self) -> Option<String> {
        self.shared
            .write_failure
            .lock()
            .expect("write failure lock poisoned")
            .clone()
    }

    /// Position the next event of `chain` will take, which is also its event count.
    pub fn next_position(&self, chain: ChainId) -> Result<Position, LedgerError> {
        Ok(self.head(chain)?.next)
    }

    /// Hash of the last event of `chain`, or its genesis value when empty.
    pub fn last_hash(&self, chain: ChainId) -> Result<EventHash, LedgerError> {
        Ok(self.head(chain)?.last_hash)
    }

    fn head(&self, chain: ChainId) -> Result<Head, LedgerError> {
        self.check_chain(chain)?;
        let heads = self.shared.heads.lock().expect("heads lock poisoned");
        Ok(heads[&chain])
    }

    fn check_chain(&self, chain: ChainId) -> Result<(), LedgerError> {
        if chain.get() >= self.shared.chain_count {
            return Err(LedgerError::UnknownChain {
                chain,
                chains: self.shared.chain_count,
            });
        }
        Ok(())
    }

    /// Stops the writer after the queued appends and releases the directory.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let stops = std::mem::take(&mut *self.on_close.lock().expect("close hooks lock poisoned"));
        for stop in stops {
            stop();
        }
        self.sender.take();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(dir = %self.shared.dir.display(), "ledger writer thread panicked");
        }
    }
}

impl Drop for EmbeddedLedger {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl crate::workload::Appender for EmbeddedLedger {
    type Error = LedgerError;

    /// Appends at the sequencer's own time; see
    /// [`AtSimulatedTime`](crate::workload::AtSimulatedTime) for simulated times.
    async fn append(
        &self,
        request: AppendRequest,
        _at: consign_schemas::Timestamp,
    ) -> Result<Appended, LedgerError> {
        EmbeddedLedger::append(self, request).await
    }
}
