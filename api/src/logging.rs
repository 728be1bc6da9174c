//! Log output: human-readable lines or JSON, filtered by `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Format of log lines on standard error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides the default level, `info` for
/// a server and `warn` for a one-off command, whose progress bars and results would
/// otherwise be interleaved with routine lines. Colours are used only when standard
/// error is a terminal.
pub fn init(format: LogFormat, server: bool) {
    let default = if server { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Formats `error` with its causes, separated by ": ". A cause whose text is already
/// part of the text before it is left out, so that an error that quotes its source in
/// its own message does not print it twice.
pub fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot create /x: {source}")]
    struct Quoting {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn quoted_source_printed_once() {
        let source = std::io::Error::from(std::io::ErrorKind::NotFound);
        let error = anyhow::Error::new(Quoting { source }).context("cannot start");

        let text = error_chain(&error);

        assert_eq!(text, "cannot start: cannot create /x: entity not found");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen: {source}; choose another port")]
    struct Advising {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn source_quoted_before_advice_printed_once() {
        let source = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let error = anyhow::Error::new(Advising { source });

        let text = error_chain(&error);

        assert_eq!(text, "cannot listen: address in use; choose another port");
    }

    #[test]
    fn unquoted_causes_all_printed() {
        let error = anyhow::anyhow!("disk full")
            .context("cannot write the ledger")
            .context("cannot append");

        let text = error_chain(&error);

        assert_eq!(text, "cannot append: cannot write the ledger: disk full");
    }
}
