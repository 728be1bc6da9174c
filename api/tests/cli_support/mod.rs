//! Running the `consign` binary from CLI tests, as a user would from a shell.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Builds a command for the binary under test, without a data directory from the
/// environment and with warnings only in its log.
pub fn consign() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_consign"));
    command
        .env_remove("CONSIGN_DATA_DIR")
        .env("RUST_LOG", "warn");
    command
}

/// Runs the binary with `args` and returns what it printed.
pub fn run(args: &[&str]) -> Output {
    consign().args(args).output().expect("consign runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Generates a ledger of `deliveries` deliveries in `dir`.
pub fn generate(dir: &Path, deliveries: u32) {
    let output = run(&[
        "ledger",
        "generate",
        "--data-dir",
        dir.to_str().unwrap(),
        "--deliveries",
        &deliveries.to_string(),
    ]);
    assert!(
        output.status.success(),
        "generate failed: {}",
        text(&output.stderr)
    );
}

/// Returns the BLAKE3 digest of every file under `dir`, sorted by path.
pub fn file_digests(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut digests = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            digests.extend(file_digests(&path));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            digests.push((path, blake3::hash(&bytes).to_hex().to_string()));
        }
    }
    digests.sort();
    digests
}

/// True when the tests run as root, as CI does.
pub fn is_root() -> bool {
    effective_uid() == 0
}

/// Reads the effective user id from procfs, since the workspace forbids unsafe code.
fn effective_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .expect("effective uid in /proc/self/status")
}

/// A tmpfs of a few megabytes, unmounted on drop.
pub struct SmallDisk {
    pub path: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (as `mount -o size=` reads it) in a new folder.
    pub fn mount(size: &str) -> SmallDisk {
        assert!(
            is_root(),
            "the full-disk test mounts a tmpfs and must run as root, as CI does"
        );
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                path.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(status.success(), "mount of a tmpfs failed");
        SmallDisk {
            path,
            _parent: parent,
        }
    }

    /// Changes the size of the mounted tmpfs.
    pub fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args([
                "-o",
                &format!("remount,size={size}"),
                self.path.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(status.success(), "remount of the tmpfs failed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}
