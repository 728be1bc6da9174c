//! Opening the ledger a command works on: the embedded store in the data directory,
//! or, with `--kafka`, this process's copy of the ledger in Kafka, brought up to the
//! topic's end first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use consign_ledger::kafka::{KafkaOptions, KafkaStatus, open_kafka_ledger};
use consign_ledger::{EmbeddedLedger, EmbeddedOptions, LedgerError};
use consign_schemas::ChainId;

use super::DataDirArgs;

/// Maximum wait for the copy to catch up with the topic, or for a sequencer to start.
const CATCH_UP: Duration = Duration::from_secs(300);

/// Folder of the postmark and checkpoint signing keys in the key folder.
pub(crate) const POSTMARK_KEYS: &str = "postmark";
/// File of the key that wraps each sealed document's key, in the key folder.
pub(crate) const DOCUMENTS_KEK: &str = "documents.kek";
/// File of the key that derives the recipients' link tokens, in the key folder.
pub(crate) const LINKS_KEY: &str = "links.key";

/// Takes the exclusive lock of the key folder `keys` (its `.lock` file), which a
/// starting server and `keys generate` hold while they create or change keys, so that
/// processes doing so at the same moment take turns. The lock ends with the file.
///
/// # Errors
///
/// The lock file cannot be opened or locked.
pub(crate) fn lock_key_folder(keys: &Path) -> anyhow::Result<std::fs::File> {
    let lock_path = keys.join(".lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open the key folder's lock {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock the key folder {}", keys.display()))?;
    Ok(lock)
}

/// The part a command plays on Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Reads only: the copy follows the topic and sequences nothing.
    Follow,
    /// Appends: this process sequences these chains (`None` for all), fencing the
    /// sequencers of the same chains in any other process.
    Sequence(Option<Vec<ChainId>>),
}

impl DataDirArgs {
    /// Returns the key folder: `--keys-dir`, or `keys` in the data directory.
    ///
    /// # Errors
    ///
    /// A folder given with `--keys-dir` that does not exist, such as a share that is
    /// not mounted: keys created in its place would differ from the other servers'.
    pub fn keys_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.keys_dir {
            Some(dir) if !dir.is_dir() => anyhow::bail!(
                "the key folder {} (--keys-dir) does not exist or is not a folder; create it \
                 and copy the keys of the first server into it, or mount the shared \
                 filesystem it is on",
                dir.display()
            ),
            Some(dir) => Ok(dir.clone()),
            None => Ok(self.data_dir.join("keys")),
        }
    }

    /// Returns the folder of the signing keys in the key folder.
    ///
    /// # Errors
    ///
    /// As [`DataDirArgs::keys_dir`].
    pub fn postmark_dir(&self) -> anyhow::Result<PathBuf> {
        Ok(self.keys_dir()?.join(POSTMARK_KEYS))
    }

    /// Returns the Kafka options of these arguments, when `--kafka` was given.
    pub(crate) fn kafka_options(&self, role: Role) -> Option<KafkaOptions> {
        let brokers = self.kafka.clone()?;
        Some(KafkaOptions {
            brokers,
            topic: self.kafka_topic.clone(),
            sequence: match role {
                Role::Follow => Some(Vec::new()),
                Role::Sequence(chains) => chains,
            },
            balance: false,
        })
    }
}

/// Opens the ledger for a command outside any async runtime. With `--kafka` the copy
/// in the data directory is opened for writing, because imports write to it, and
/// caught up with the topic. With [`Role::Sequence`] it also waits for those
/// sequencers.
///
/// # Errors
///
/// The ledger cannot be opened, Kafka cannot be reached, or the copy does not catch
/// up within five minutes.
pub(crate) fn open_ledger(
    data: &DataDirArgs,
    options: EmbeddedOptions,
    role: Role,
) -> Result<EmbeddedLedger, anyhow::Error> {
    let Some(kafka) = data.kafka_options(role.clone()) else {
        return EmbeddedLedger::open(&data.data_dir, options).map_err(|error| {
            anyhow::Error::new(error).context(format!(
                "cannot open the ledger in {}",
                data.data_dir.display()
            ))
        });
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(open_kafka(data, options, &kafka, role))
}

/// Opens the copy of the Kafka ledger in `data`'s directory and waits until it is
/// usable for `role`.
///
/// # Errors
///
/// As [`open_ledger`].
pub(crate) async fn open_kafka(
    data: &DataDirArgs,
    options: EmbeddedOptions,
    kafka: &KafkaOptions,
    role: Role,
) -> anyhow::Result<EmbeddedLedger> {
    let options = EmbeddedOptions {
        read_only: false,
        ..options
    };
    let (ledger, status) = open_kafka_ledger(&data.data_dir, options, kafka)
        .await
        .with_context(|| {
            format!(
                "cannot open the copy of the Kafka ledger ({} at {}) in {}",
                kafka.topic,
                kafka.brokers,
                data.data_dir.display()
            )
        })?;
    wait_usable(&ledger, &status, role).await?;
    Ok(ledger)
}

async fn wait_usable(
    ledger: &EmbeddedLedger,
    status: &KafkaStatus,
    role: Role,
) -> anyhow::Result<()> {
    eprintln!("reading the Kafka ledger into the local copy...");
    if !status.catch_up(CATCH_UP).await? {
        anyhow::bail!(
            "the local copy did not catch up with Kafka within {} s; check the brokers and \
             run the command again",
            CATCH_UP.as_secs()
        );
    }
    if let Role::Sequence(chains) = role {
        let chains = chains.unwrap_or_else(|| ledger.chains().collect());
        if !status.wait_ready(&chains, CATCH_UP).await {
            return Err(LedgerError::Unavailable {
                chain: chains
                    .iter()
                    .copied()
                    .find(|chain| !status.ready_chains().contains(chain))
                    .unwrap_or(ChainId::new(0)),
                reason: "its sequencer did not start within five minutes".to_owned(),
            }
            .into());
        }
    }
    Ok(())
}
