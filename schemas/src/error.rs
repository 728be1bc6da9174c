//! Errors raised while encoding, decoding or validating schema values.

/// A failure at the schema boundary: bytes that are not a valid event of this build.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error(
        "event written with schema version {found}, but this build reads up to version \
         {supported}; upgrade consign to read it"
    )]
    UnsupportedVersion { found: u16, supported: u16 },

    #[error("event bytes are not a valid envelope: {reason}")]
    Decode { reason: String },

    #[error("event bytes have {count} unexpected bytes after the envelope")]
    TrailingBytes { count: usize },

    #[error("event could not be encoded: {reason}")]
    Encode { reason: String },

    #[error("idempotency key of {length} bytes is invalid: use 1 to 200 bytes")]
    InvalidIdempotencyKey { length: usize },
}
