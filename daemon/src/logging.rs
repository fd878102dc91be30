//! Tracing to stderr (human or JSON) and to journald when it is present.

use crate::config::{LogConfig, LogFormat};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// `HERD_LOG` (a tracing filter) overrides the configured level.
pub fn init(config: &LogConfig) {
    // async-nats logs every connect at info; herdd says the same once in its own words.
    let filter = EnvFilter::try_from_env("HERD_LOG")
        .or_else(|_| EnvFilter::try_new(format!("async_nats=warn,{}", config.level)))
        .unwrap_or_else(|_| EnvFilter::new("async_nats=warn,info"));
    let journald = tracing_journald::layer().ok();
    // Under systemd, stderr already goes to the journal: log there once, with fields.
    let stderr_is_journal = journald.is_some() && std::env::var_os("JOURNAL_STREAM").is_some();
    let stderr = (!stderr_is_journal).then(|| match config.format {
        // Colours only on a terminal: log files and the journal get plain text.
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    });
    let have_journald = journald.is_some();
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(journald)
        .try_init();
    if !have_journald {
        tracing::debug!("journald is not present; logging to stderr only");
    }
}
