//! How herdd and herdctl reach NATS: the `[nats]` configuration, the connection flags that lay
//! over it, and `connect`; and herd's object store buckets. No actors, no domain logic:
//! herdctl links this, not herd-actors.

mod args;
mod config;
mod connect;
pub mod objects;
mod streams;

pub use args::NatsArgs;
pub use config::{NatsConfig, DEFAULT_NATS_URL};
pub use connect::{connect, reconnect_delay, Persistence};
pub use streams::ensure_stream;

use std::path::PathBuf;

/// A `[nats]` configuration that cannot work, or a connection that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("nats.urls is empty: give at least one server")]
    NoServers,
    #[error("nats: choose one of creds_file, nkey_seed_file, user/password and token")]
    SeveralAuthMethods,
    #[error("nats: user and password go together")]
    UserWithoutPassword,
    #[error("nats: tls_cert and tls_key go together")]
    CertWithoutKey,
    #[error("nats.prefix: {0}")]
    Prefix(herd_bus::IdError),
    #[error("NATS credentials file {}", path.display())]
    Credentials {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("NATS nkey seed file {}", path.display())]
    NkeySeed {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("NATS URL '{url}'")]
    Url { url: String, source: std::io::Error },
    #[error("cannot connect to NATS at {urls}")]
    Connect {
        urls: String,
        source: async_nats::ConnectError,
    },
}
