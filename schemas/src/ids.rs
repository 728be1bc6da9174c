//! Identifier, position, hash and time newtypes shared by every crate.
//!
//! Each type hides its storage so that no bare integer or byte array crosses a crate
//! boundary. Random identifiers are UUIDs (version 4, 122 random bits); they encode
//! as 16 length-prefixed bytes in postcard and as the hyphenated form in JSON.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Draws a fresh random identifier.
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }

            /// Builds an identifier from its 16 bytes, for fixtures and decoding.
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }

            /// Returns the 16 bytes of the identifier.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(text).map(Self)
            }
        }
    };
}

uuid_id!(
    /// Identifier of one event, unique across all chains.
    EventId
);
uuid_id!(
    /// Identifier of the command (API request, scheduler tick, notifier step) that caused events.
    CommandId
);
uuid_id!(
    /// Identifier of a delivery: one submission to one or more recipients.
    DeliveryId
);
uuid_id!(
    /// Identifier of a stored document.
    DocumentId
);
uuid_id!(
    /// Identifier of an account (sender, admin, billing or auditor).
    AccountId
);
uuid_id!(
    /// Identifier of one recipient within a delivery.
    RecipientId
);
uuid_id!(
    /// Identifier of one e-mail: fixed when the attempt is recorded and reused by every retry.
    NotificationId
);

/// Chain number. The embedded backend and each Kafka partition each extend one chain.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChainId(u32);

impl ChainId {
    pub const fn new(number: u32) -> Self {
        Self(number)
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Position of an event within its chain, counted from 0 without gaps.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(u64);

impl Position {
    pub const ZERO: Position = Position(0);

    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// Returns the position after this one.
    ///
    /// # Panics
    ///
    /// Panics at `u64::MAX`, which no chain reaches.
    pub fn next(self) -> Self {
        Self(self.0.checked_add(1).expect("chain position overflow"))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A 32-byte BLAKE3 output: an event hash, a chain's genesis value or a document hash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash32([u8; 32]);

/// Hash of an event's stored bytes, linking it to its successor.
pub type EventHash = Hash32;

/// BLAKE3 hash of a document's plaintext.
pub type ContentHash = Hash32;

impl Hash32 {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hexadecimal digits.
    pub fn from_hex(text: &str) -> Result<Self, hex::FromHexError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes)?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({})", self.to_hex())
    }
}

impl Serialize for Hash32 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Hash32 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            Hash32::from_hex(&text).map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Hash32)
        }
    }
}

/// A UTC instant in microseconds since the Unix epoch, from the sequencer's clock.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Reads the system clock.
    ///
    /// # Panics
    ///
    /// Panics if the clock is set before 1970 or after the year 294,000.
    pub fn now() -> Self {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("system clock is set before 1970");
        Self(i64::try_from(since_epoch.as_micros()).expect("system clock out of range"))
    }
}

/// Caller-chosen key that makes a retried append return the original events.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Maximum length in bytes, so that keys stay cheap to index.
    pub const MAX_LEN: usize = 200;

    /// Wraps a key of 1 to [`Self::MAX_LEN`] bytes.
    pub fn new(key: impl Into<String>) -> Result<Self, crate::SchemaError> {
        let key = key.into();
        if key.is_empty() || key.len() > Self::MAX_LEN {
            return Err(crate::SchemaError::InvalidIdempotencyKey { length: key.len() });
        }
        Ok(Self(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
