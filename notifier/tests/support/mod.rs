//! Shared fixtures of the integration tests: a real SMTP server process on loopback
//! (`tests/smtp_server.py`, built on aiosmtpd), notices with text in several scripts,
//! and a header reader for produced messages.
//!
//! The server is a child process that dies with the [`SmtpServer`] value. When Python 3
//! or aiosmtpd is missing, starting it panics with the install command: the tests fail
//! rather than skip.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use consign_notifier::{
    AccessToken, Composer, ComposerConfig, ConsignmentNotice, DocumentEntry, MessageIdDomain,
    ReceiptNotice, new_message_id,
};
use consign_schemas::events::{Mailbox, ZonedTime};
use consign_schemas::{ContentHash, DeliveryId, NotificationId, Timestamp};

/// How to get the test server's dependencies, repeated in every start failure.
const INSTALL_HINT: &str = "the SMTP integration tests need Python 3 with aiosmtpd: \
     run `python3 -m pip install aiosmtpd`, or on Debian `apt-get install python3 \
     python3-aiosmtpd`; set PYTHON to use another interpreter";

/// Maximum time for the server to print its port. Python starts in well under a
/// second here; the margin covers a loaded CI machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub const FROM_ADDRESS: &str = "notify@consign.test";
pub const PUBLIC_BASE_URL: &str = "https://consign.test";
pub const TOKEN: &str = "Tk_0123456789-abcdefghijKLMNOP";

/// One message the server accepted: the DATA bytes and the envelope it recorded.
#[derive(Debug)]
pub struct SavedMessage {
    pub name: String,
    pub bytes: Vec<u8>,
    /// `mail_from`, `rcpt_tos`, `mail_options` and `auth_login`.
    pub envelope: serde_json::Value,
}

/// `tests/smtp_server.py` running as a child process on 127.0.0.1.
#[derive(Debug)]
pub struct SmtpServer {
    child: Child,
    port: u16,
    messages_dir: PathBuf,
    /// Holds the messages directory and the server's stderr log.
    _work_dir: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts a server that needs no authentication.
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// Starts a server that requires AUTH with `user` and `password`.
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::start_with_args(&["--auth", &format!("{user}:{password}")])
    }

    /// Spawns the server on port 0 and waits for the `PORT <n>` line it prints.
    ///
    /// # Panics
    ///
    /// Panics with [`INSTALL_HINT`] and the server's stderr if the interpreter cannot be
    /// started or the server exits or stays silent instead of printing its port.
    fn start_with_args(extra_args: &[&str]) -> Self {
        let work_dir = tempfile::tempdir().expect("create a temporary directory");
        let messages_dir = work_dir.path().join("messages");
        std::fs::create_dir(&messages_dir).expect("create the messages directory");
        let log_path = work_dir.path().join("server.log");
        let log = File::create(&log_path).expect("create the server log");

        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_server.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("0")
            .arg(&messages_dir)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|error| panic!("failed to run {python:?}: {error}; {INSTALL_HINT}"));

        // A thread reads the first line so that a silent server cannot block the test.
        let stdout = child.stdout.take().expect("stdout is piped");
        let (line_sender, line_receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = line_sender.send(line);
        });
        let line = line_receiver
            .recv_timeout(START_TIMEOUT)
            .unwrap_or_default();

        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|port| port.parse::<u16>().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let status = child.wait();
            let stderr = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!(
                "the SMTP test server {script:?} did not report its port (stdout {line:?}, \
                 exit {status:?}); {INSTALL_HINT}\nserver stderr:\n{stderr}"
            );
        };

        Self {
            child,
            port,
            messages_dir,
            _work_dir: work_dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:{port}?timeout=20` followed by `extra_query`, such as
    /// `&tls=starttls`. The timeout keeps a hanging exchange from stalling the tests for
    /// the default 60 s.
    pub fn url(&self, extra_query: &str) -> String {
        format!("smtp://127.0.0.1:{}?timeout=20{extra_query}", self.port)
    }

    /// Returns every accepted message, in the order the server received them.
    pub fn saved_messages(&self) -> Vec<SavedMessage> {
        let mut names: Vec<String> = std::fs::read_dir(&self.messages_dir)
            .expect("read the messages directory")
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter_map(|name| name.strip_suffix(".eml").map(str::to_owned))
            .collect();
        names.sort();

        names
            .into_iter()
            .map(|name| {
                let bytes = std::fs::read(self.messages_dir.join(format!("{name}.eml"))).unwrap();
                let envelope_text =
                    std::fs::read_to_string(self.messages_dir.join(format!("{name}.json")))
                        .unwrap();
                SavedMessage {
                    name,
                    bytes,
                    envelope: serde_json::from_str(&envelope_text).unwrap(),
                }
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns a loopback port with nothing listening on it: bound once, then released.
pub fn unused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

pub fn composer() -> Composer {
    Composer::new(ComposerConfig {
        from_address: FROM_ADDRESS.to_owned(),
        from_name: Some("Consign Notifications".to_owned()),
        public_base_url: PUBLIC_BASE_URL.to_owned(),
    })
    .unwrap()
}

pub fn message_id(notification: NotificationId) -> String {
    new_message_id(notification, &MessageIdDomain::new("consign.test").unwrap())
}

pub fn mailbox(address: &str, display_name: Option<&str>) -> Mailbox {
    Mailbox {
        address: address.to_owned(),
        display_name: display_name.map(str::to_owned),
    }
}

/// Three documents whose names use Latin with diacritics, Japanese and Arabic.
pub fn documents() -> Vec<DocumentEntry> {
    vec![
        DocumentEntry {
            name: "Übersicht 2026.pdf".to_owned(),
            size: 1536,
            content_hash: ContentHash::from_bytes([0xab; 32]),
        },
        DocumentEntry {
            name: "報告書.docx".to_owned(),
            size: 5 * 1024 * 1024,
            content_hash: ContentHash::from_bytes([0x01; 32]),
        },
        DocumentEntry {
            name: "عقد الإيجار.txt".to_owned(),
            size: 12,
            content_hash: ContentHash::from_bytes([0x5c; 32]),
        },
    ]
}

/// Builds a consignment notice to `recipient_address`, with non-ASCII text in every
/// field.
pub fn consignment_notice(recipient_address: &str) -> ConsignmentNotice {
    let notification = NotificationId::random();
    ConsignmentNotice {
        notification,
        message_id: message_id(notification),
        recipient: mailbox(recipient_address, Some("Zoë Ωμέγα 山田 (محمد)")),
        sender: mailbox("juergen@sender.test", Some("Jürgen Groß, Notar")),
        subject: "Contrat signé – 契約書 – عقد".to_owned(),
        message: "Bonjour,\nvoici les documents signés.\n\n— J.".to_owned(),
        access_token: AccessToken::new(TOKEN).unwrap(),
        documents: documents(),
        expires_at: Some(ZonedTime {
            instant: Timestamp::from_micros(1_777_651_200_000_000),
            zone: "Europe/Paris".to_owned(),
        }),
        password_required: false,
    }
}

/// Builds a receipt notice to the sender `sender_address` about a download by Zoë.
pub fn receipt_notice(sender_address: &str) -> ReceiptNotice {
    let notification = NotificationId::random();
    ReceiptNotice {
        notification,
        message_id: message_id(notification),
        delivery: DeliveryId::from_bytes([9; 16]),
        delivery_subject: "Contrat signé – 契約書".to_owned(),
        sender: mailbox(sender_address, Some("Jürgen Groß")),
        recipient: mailbox("anna@recipient.test", Some("Zoë Ωμέγα")),
        document: documents().remove(1),
        downloaded_at: Timestamp::from_micros(1_777_651_200_000_000),
    }
}

/// Returns the lowercase names of the top-level header fields, read directly from the
/// bytes: every line before the first empty line that does not start with whitespace
/// must be `Name: value`.
///
/// # Panics
///
/// Panics on a line that is neither a header field nor a continuation, or on a missing
/// header/body separator.
pub fn raw_header_names(message: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(message).expect("message is UTF-8");
    let (header_block, _) = text
        .split_once("\r\n\r\n")
        .expect("message has a header/body separator");

    let mut names = Vec::new();
    for line in header_block.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let (name, _) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("header line without a colon: {line:?}"));
        assert!(
            !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_graphic()),
            "malformed header name in {line:?}"
        );
        names.push(name.to_ascii_lowercase());
    }
    names
}

/// Returns the sorted lowercase header names that mail-parser finds in `message`.
pub fn parsed_header_names(message: &mail_parser::Message<'_>) -> Vec<String> {
    let mut names: Vec<String> = message
        .headers_raw()
        .map(|(name, _)| name.to_ascii_lowercase())
        .collect();
    names.sort();
    names
}

/// Sorted lowercase names of every header a consignment e-mail has.
pub fn consignment_header_names() -> Vec<String> {
    sorted(&[
        "auto-submitted",
        "content-transfer-encoding",
        "content-type",
        "date",
        "from",
        "message-id",
        "mime-version",
        "reply-to",
        "subject",
        "to",
    ])
}

/// Sorted lowercase names of every header a receipt e-mail has.
pub fn receipt_header_names() -> Vec<String> {
    sorted(&[
        "auto-submitted",
        "content-transfer-encoding",
        "content-type",
        "date",
        "from",
        "message-id",
        "mime-version",
        "subject",
        "to",
    ])
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    names.sort();
    names
}
