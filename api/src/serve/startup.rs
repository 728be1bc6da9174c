//! Checks and key loading that run before `consign serve` opens its ledger.

use std::path::Path;

use anyhow::Context;
use consign_ledger::EmbeddedLedger;
use consign_ledger::kafka::{recent_checkpoint_keys, topic_has_records};
use consign_ledger::postmark::PostmarkKeys;
use consign_notifier::LinkKey;
use consign_schemas::Event;

use super::ServeArgs;
use crate::blobs::KeyEncryptionKey;
use crate::cli::backend::{DOCUMENTS_KEK, LINKS_KEY, POSTMARK_KEYS, lock_key_folder};

/// Checks that `listen` names an address that can be bound now, before the data
/// directory is touched. The socket is closed again: the server binds it once the
/// ledger is open, so another process may still take the port in between.
pub(super) async fn check_listen_address(listen: &str) -> anyhow::Result<()> {
    let addresses = crate::listen::resolve(listen).await?;
    drop(crate::listen::bind(listen, &addresses)?);
    Ok(())
}

/// Rejects a public URL with a path, such as `https://example.org/consign/`.
///
/// The pages, their forms and the redirect after the password form use paths from the
/// root of the host, so links under a path prefix would lead recipients astray. A URL
/// that does not parse passes here, and the e-mail composer reports it in full.
pub(super) fn check_public_url_path(public_url: &str) -> anyhow::Result<()> {
    let Ok(url) = url::Url::parse(public_url) else {
        return Ok(());
    };
    let path = url.path();
    if path.is_empty() || path == "/" {
        return Ok(());
    }
    anyhow::bail!(
        "invalid --public-url {public_url:?}: it has the path {path:?}, but consign serves \
         its pages and links from the root of the host; give the URL without a path, such \
         as https://consign.example.org, and serve consign at the root of its host name"
    )
}

/// Creates the outbox folder when missing and checks that this process can write a
/// file in it, so that an unusable outbox stops the start instead of deferring every
/// e-mail. `option` names where the path came from, for the message.
pub(super) fn prepare_outbox(outbox: &Path, option: &str) -> anyhow::Result<()> {
    if outbox.exists() && !outbox.is_dir() {
        anyhow::bail!(
            "the outbox {} ({option}) is a file, not a folder; give the path of a folder, \
             which is created when missing",
            outbox.display()
        );
    }
    std::fs::create_dir_all(outbox).with_context(|| {
        format!(
            "cannot create the outbox folder {} ({option}); give a folder that the server's \
             user can create and write in",
            outbox.display()
        )
    })?;

    let probe = outbox.join(format!(".consign-write-check-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe);
    if let Err(error) = written {
        anyhow::bail!(
            "cannot write e-mails in the outbox folder {} ({option}): {error}; give the \
             server's user write access to it, or give another folder",
            outbox.display()
        );
    }
    std::fs::remove_file(&probe)
        .with_context(|| format!("cannot remove the write check file {}", probe.display()))?;
    Ok(())
}

/// The keys a server works with, loaded from its key folder.
pub(super) struct ServerKeys {
    pub postmark: PostmarkKeys,
    pub kek: KeyEncryptionKey,
    pub links: LinkKey,
}

/// Loads the keys from `keys`, creating those missing, while holding a lock on the
/// folder. Servers that start at the same moment on one shared folder thus create one
/// set of keys, which the others load.
///
/// # Errors
///
/// A key that cannot be read or created, and, on Kafka, missing keys on a topic that
/// already has events, or keys that did not sign its recent checkpoints (see
/// [`check_keys_against_topic`]).
pub(super) async fn load_or_create_keys(
    args: &ServeArgs,
    keys: &Path,
) -> anyhow::Result<ServerKeys> {
    let kafka = args
        .data
        .kafka
        .clone()
        .map(|brokers| (brokers, args.data.kafka_topic.clone()));
    load_or_create_keys_in(kafka, keys.to_owned()).await
}

/// Does the work of [`load_or_create_keys`], with the Kafka brokers and topic if any.
async fn load_or_create_keys_in(
    kafka: Option<(String, String)>,
    keys: std::path::PathBuf,
) -> anyhow::Result<ServerKeys> {
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&keys)
            .with_context(|| format!("cannot create the key folder {}", keys.display()))?;
        let lock = lock_key_folder(&keys)?;

        if let Some((brokers, topic)) = kafka {
            check_keys_against_topic(&brokers, &topic, &keys)?;
        }
        let loaded = ServerKeys {
            postmark: load_or_create_postmark_keys(&keys.join(POSTMARK_KEYS))?,
            kek: load_or_create_kek(&keys.join(DOCUMENTS_KEK))?,
            links: LinkKey::load_or_create(&keys.join(LINKS_KEY))?,
        };
        drop(lock);
        Ok(loaded)
    })
    .await
    .context("the key loading task failed")?
}

/// Records read from the end of each partition to find the keys of its latest
/// checkpoints.
const CHECKED_TAIL: i64 = 4096;

/// Stops a Kafka server whose keys would not match those of the servers already
/// writing the topic: one that would create keys, or one whose key folder lacks the
/// key that signed the topic's recent checkpoints. Its links, sealed documents and
/// signatures would not match theirs.
fn check_keys_against_topic(brokers: &str, topic: &str, keys: &Path) -> anyhow::Result<()> {
    let postmark_current = format!("{POSTMARK_KEYS}/current");
    let missing: Vec<String> = [postmark_current.as_str(), DOCUMENTS_KEK, LINKS_KEY]
        .into_iter()
        .filter(|name| !keys.join(name).exists())
        .map(|name| keys.join(name).display().to_string())
        .collect();
    if !missing.is_empty() {
        if topic_has_records(brokers, topic)? {
            anyhow::bail!(
                "topic {topic} already has events, but the key folder {} lacks {}; give \
                 --keys-dir the key folder of the servers already on the topic (or a copy \
                 of it), so that this server's links, encrypted documents and signatures \
                 match theirs",
                keys.display(),
                missing.join(", ")
            );
        }
        return Ok(());
    }

    let known = PostmarkKeys::load_public(&keys.join(POSTMARK_KEYS))?;
    let signed = recent_checkpoint_keys(brokers, topic, CHECKED_TAIL)?;
    let foreign: Vec<&str> = signed
        .iter()
        .filter(|id| !known.contains_key(*id))
        .map(String::as_str)
        .collect();
    if !foreign.is_empty() {
        anyhow::bail!(
            "the checkpoints on topic {topic} are signed with {}, which the key folder {} \
             does not have, so it is not the key folder of the servers already on the topic; \
             give --keys-dir their folder (or a copy of it), so that this server's links, \
             encrypted documents and signatures match theirs",
            foreign.join(", "),
            keys.display()
        );
    }
    Ok(())
}

/// Stops an embedded server whose key folder lacks the postmark key that signed the
/// ledger's latest checkpoints. The folder was lost or replaced, and keys created or
/// loaded from it would not match the links, encrypted documents and signatures already
/// recorded. A ledger without checkpoints, such as one `account create` made, is not
/// checked.
///
/// NOTE: only the postmark key is checked. A folder that lost `documents.kek` alone gets
/// a new one, and documents sealed under the old key can no longer be read. Generated
/// ledgers have sealed documents but no such key, so a missing key alone does not
/// prove a loss.
pub(super) fn check_keys_against_ledger(
    ledger: &EmbeddedLedger,
    keys: &Path,
) -> anyhow::Result<()> {
    let mut signers = std::collections::BTreeSet::new();
    for chain in ledger.chains() {
        let Some(position) = ledger.last_checkpoint(chain)? else {
            continue;
        };
        for stored in ledger.read(chain, position, 1)? {
            if let Event::CheckpointSigned(signed) = &stored.envelope.event {
                signers.insert(signed.key_id.clone());
            }
        }
    }
    if signers.is_empty() {
        return Ok(());
    }
    let postmark = keys.join(POSTMARK_KEYS);
    let known = if postmark.exists() {
        PostmarkKeys::load_public(&postmark)?
    } else {
        std::collections::BTreeMap::new()
    };
    let foreign: Vec<&str> = signers
        .iter()
        .map(String::as_str)
        .filter(|id| !known.contains_key(*id))
        .collect();
    if !foreign.is_empty() {
        anyhow::bail!(
            "the ledger in {} has checkpoints signed with {}, which the key folder {} does \
             not have, so it is not this ledger's key folder; give --keys-dir this ledger's \
             key folder, or restore it from a backup, because keys created anew would not \
             match its links, encrypted documents and signatures",
            ledger.dir().display(),
            foreign.join(", "),
            keys.display()
        );
    }
    Ok(())
}

/// Loads the postmark signing keys, creating the first one on first start.
fn load_or_create_postmark_keys(dir: &Path) -> anyhow::Result<PostmarkKeys> {
    if !dir.join("current").exists() {
        let id = PostmarkKeys::generate(dir)?;
        tracing::info!(dir = %dir.display(), key_id = %id, "created the first postmark signing key");
    }
    Ok(PostmarkKeys::load(dir)?)
}

/// Loads the key that wraps document keys, creating it on first start.
fn load_or_create_kek(path: &Path) -> anyhow::Result<KeyEncryptionKey> {
    if path.exists() {
        return Ok(KeyEncryptionKey::load(path)?);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the key folder {}", parent.display()))?;
    }
    let key = KeyEncryptionKey::generate();
    key.save_new(path)?;
    tracing::info!(path = %path.display(), key_id = key.key_id(), "created the document key-encryption key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use consign_schemas::{DeliveryId, RecipientId};

    use super::load_or_create_keys_in;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn servers_starting_together_share_one_key_set() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");

        let starts: Vec<_> = (0..4)
            .map(|_| tokio::spawn(load_or_create_keys_in(None, keys.clone())))
            .collect();
        let mut loaded = Vec::new();
        for start in starts {
            loaded.push(start.await.unwrap().unwrap());
        }

        let delivery = DeliveryId::random();
        let recipient = RecipientId::random();
        let first = &loaded[0];
        for other in &loaded[1..] {
            assert_eq!(other.postmark.current_id(), first.postmark.current_id());
            assert_eq!(other.kek.key_id(), first.kek.key_id());
            assert_eq!(
                other.links.token(delivery, recipient).as_str(),
                first.links.token(delivery, recipient).as_str()
            );
        }
        let signing_keys = std::fs::read_dir(keys.join(super::POSTMARK_KEYS))
            .unwrap()
            .filter(|entry| {
                let name = entry.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".key")
            })
            .count();
        assert_eq!(
            signing_keys, 1,
            "more than one postmark signing key was created"
        );
    }
}
