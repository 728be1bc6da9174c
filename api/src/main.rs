//! The `consign` binary: parses the command line, sets up logging, and runs one
//! subcommand. Errors are printed with their whole cause chain.

use std::process::ExitCode;

use clap::Parser;

use consign_api::cli::{Cli, Outcome};
use consign_api::logging::LogFormat;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format;
    consign_api::logging::init(format);

    match consign_api::cli::run(cli) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::CheckFailed) => ExitCode::from(1),
        Err(error) => {
            match format {
                LogFormat::Text => eprintln!("error: {error:#}"),
                LogFormat::Json => tracing::error!(error = format!("{error:#}"), "command failed"),
            }
            ExitCode::from(2)
        }
    }
}
