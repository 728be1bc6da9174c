//! The `consign` binary: parses the command line, sets up logging, and runs one
//! subcommand. Errors are printed with their whole cause chain, each cause once.

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
            let text = consign_api::logging::error_chain(&error);
            match format {
                LogFormat::Text => eprintln!("error: {text}"),
                LogFormat::Json => tracing::error!(error = text, "command failed"),
            }
            ExitCode::from(2)
        }
    }
}
