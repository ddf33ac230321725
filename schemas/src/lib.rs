//! evd's shared vocabulary: wire formats, the event-type registry, keys and batch
//! crypto. Pure functions and data only: no I/O, no async; the wall clock is read only
//! by [`clock::unix_now_ms`], for the roles (cores take times as arguments). The formats are specified in `docs/wire-format.md`.

pub mod clock;
pub mod env_vars;
pub mod error;
pub mod event;
pub mod hour;
pub mod kafka_client;
pub mod keys;
pub mod log_limit;
pub mod metrics;
pub mod origin;
pub mod ranges;
pub mod registry;
pub mod tail;
pub mod toml_source;
pub mod wire;

pub use error::{Error, Reason, Result};
pub use hour::{Hour, MAX_UNIX_MS};
pub use keys::{AgentKeyring, Key, KeySource, MasterKeyring};
pub use origin::{Origin, SpoolId};
pub use ranges::SeqRanges;
pub use registry::{EventType, FieldSpec, FieldType, Registry, Tier};
pub use toml_source::{Invalid, SourceError, TomlSource, ValidatedConfig};
