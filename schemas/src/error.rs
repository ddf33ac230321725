//! The crate's one public error, classified by what the caller does next.
//!
//! Modules keep detailed private error enums; they convert into [`Error`] at the API
//! boundary, keeping the detailed error as `source` so messages stay precise.

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input (bytes, line, event) is bad. Refuse it (agent) or quarantine it
    /// (consumer) under `reason`; retrying the same input never helps.
    #[error("{reason}: {source}")]
    Rejected { reason: Reason, source: BoxError },
    /// The batch names a key id the keyring does not hold. Quarantine it and alert:
    /// it can be replayed once the key is added.
    #[error("unknown key id {key_id}: the keyring does not hold it")]
    UnknownKey { key_id: u32 },
    /// A configuration file (registry, keyring) is wrong. The message names the file,
    /// line and key; fix it and start again.
    #[error("{source}")]
    Config { source: BoxError },
}

/// Stable short code for a rejection, used as a metric label and quarantine reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Framing, magic, version, lengths or limits are wrong.
    Malformed,
    /// AEAD authentication failed: tampered bytes, another agent's key, swapped header.
    BadTag,
    /// The zstd payload is corrupt or expands past its authenticated size.
    Decompress,
    /// The plaintext checksum or record framing inside an authenticated batch is wrong.
    Payload,
    /// The event line is not a JSON object, or lacks `type`/`ts`.
    Json,
    /// The event names a type the registry does not know.
    UnknownType,
    /// The event violates its type's schema.
    Schema,
    /// The line is longer than allowed.
    TooLarge,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::BadTag => "bad_tag",
            Reason::Decompress => "decompress",
            Reason::Payload => "payload",
            Reason::Json => "json",
            Reason::UnknownType => "unknown_type",
            Reason::Schema => "schema",
            Reason::TooLarge => "too_large",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    pub(crate) fn rejected(reason: Reason, source: impl Into<BoxError>) -> Self {
        Error::Rejected {
            reason,
            source: source.into(),
        }
    }

    pub(crate) fn config(source: impl Into<BoxError>) -> Self {
        Error::Config {
            source: source.into(),
        }
    }

    /// The reason code of a rejection, or `unknown_key`/`config` for the other kinds.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Error::Rejected { reason, .. } => reason.as_str(),
            Error::UnknownKey { .. } => "unknown_key",
            Error::Config { .. } => "config",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
