//! Checks and key loading that run before `consign serve` opens its ledger.

use std::net::ToSocketAddrs;
use std::path::Path;

use anyhow::Context;
use consign_ledger::kafka::topic_has_records;
use consign_ledger::postmark::PostmarkKeys;

use super::ServeArgs;
use crate::blobs::KeyEncryptionKey;

/// Checks that `listen` names an address to bind, before the data directory is
/// touched.
pub(super) fn check_listen_address(listen: &str) -> anyhow::Result<()> {
    let mut addresses = listen.to_socket_addrs().map_err(|error| {
        anyhow::anyhow!(
            "invalid --listen {listen:?}: {error}; give HOST:PORT with a port from 1 to \
             65535, such as 127.0.0.1:8080"
        )
    })?;
    if addresses.next().is_none() {
        anyhow::bail!("--listen {listen:?} resolves to no address; give HOST:PORT, such as 127.0.0.1:8080");
    }
    Ok(())
}

/// Stops a Kafka server that would create keys for a topic that other servers already
/// write. Its links, sealed documents and signatures would not match theirs.
pub(super) async fn reject_new_keys_on_used_topic(args: &ServeArgs, keys: &Path) -> anyhow::Result<()> {
    let Some(brokers) = args.data.kafka.clone() else {
        return Ok(());
    };
    let missing: Vec<String> = ["postmark/current", "documents.kek", "links.key"]
        .into_iter()
        .filter(|name| !keys.join(name).exists())
        .map(|name| keys.join(name).display().to_string())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let topic = args.data.kafka_topic.clone();
    let used = tokio::task::spawn_blocking(move || topic_has_records(&brokers, &topic))
        .await
        .context("the topic check failed")??;
    if used {
        anyhow::bail!(
            "topic {} already has events, but the key folder {} lacks {}; give --keys-dir \
             the key folder of the servers already on the topic (or a copy of it), so that \
             this server's links, encrypted documents and signatures match theirs",
            args.data.kafka_topic,
            keys.display(),
            missing.join(", ")
        );
    }
    Ok(())
}

/// Loads the postmark signing keys, creating the first one on first start.
pub(super) fn load_or_create_postmark_keys(dir: &Path) -> anyhow::Result<PostmarkKeys> {
    if !dir.join("current").exists() {
        let id = PostmarkKeys::generate(dir)?;
        tracing::info!(dir = %dir.display(), key_id = %id, "created the first postmark signing key");
    }
    Ok(PostmarkKeys::load(dir)?)
}

/// Loads the key that wraps document keys, creating it on first start.
pub(super) fn load_or_create_kek(path: &Path) -> anyhow::Result<KeyEncryptionKey> {
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
