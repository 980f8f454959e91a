//! Logging for steerd and steer-agent. Logs go to stderr (stdout is for
//! output a caller may parse), with colour only when stderr is a terminal,
//! as text or as one JSON object a line (`--log-format json`) for log
//! shippers. `RUST_LOG` overrides the default filter.

use std::io::IsTerminal;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    #[default]
    Text,
    Json,
}

pub(crate) fn init(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
