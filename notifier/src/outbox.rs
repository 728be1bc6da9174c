//! The outbox: a directory that receives each e-mail as `{notification_id}.eml` in
//! place of an SMTP relay, for development, tests and hosts that hand mail on by
//! other means.
//!
//! A file appears whole or not at all. The message is written to a temporary file in
//! the same directory (named `.tmp-*.eml.part`, so it never matches `*.eml`), fsynced, renamed
//! over the final name, and then the directory is fsynced so that the rename survives a
//! crash. A retry of the same notification replaces the file with identical bytes.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use consign_schemas::NotificationId;

/// File name of a notification's message in the outbox.
pub(crate) fn outbox_file_name(notification: NotificationId) -> String {
    format!("{notification}.eml")
}

/// Writes `formatted` to `{dir}/{notification}.eml` atomically and returns the path.
///
/// Blocking: call it from a blocking thread.
///
/// # Errors
///
/// Any I/O error of creating, writing, syncing or renaming the file. A temporary file
/// left behind by a crash keeps its `.tmp` name and can be deleted.
pub(crate) fn write_message(
    dir: &Path,
    notification: NotificationId,
    formatted: &[u8],
) -> io::Result<PathBuf> {
    let path = dir.join(outbox_file_name(notification));

    let mut temporary = tempfile::Builder::new()
        .prefix(".tmp-")
        .suffix(".eml.part")
        .tempfile_in(dir)?;
    temporary.write_all(formatted)?;
    temporary.as_file().sync_all()?;

    temporary.persist(&path).map_err(|error| error.error)?;
    File::open(dir)?.sync_all()?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_message_creates_named_file() {
        let dir = tempfile::tempdir().unwrap();
        let notification = NotificationId::from_bytes([1; 16]);

        let path = write_message(dir.path(), notification, b"Subject: x\r\n\r\nbody\r\n").unwrap();

        assert_eq!(
            path,
            dir.path().join("01010101-0101-0101-0101-010101010101.eml")
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"Subject: x\r\n\r\nbody\r\n");
    }

    #[test]
    fn write_message_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let notification = NotificationId::random();

        write_message(dir.path(), notification, b"first").unwrap();
        let path = write_message(dir.path(), notification, b"second").unwrap();

        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from(outbox_file_name(notification))]
        );
    }

    #[test]
    fn write_message_fails_without_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");

        let error = write_message(&missing, NotificationId::random(), b"x").unwrap_err();

        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
}
