//! The `consign` binary: parses the command line, sets up logging, and runs one
//! subcommand. Errors are printed with their whole cause chain.

use std::process::ExitCode;

use clap::Parser;

use consign_api::cli::{Cli, Outcome};

fn main() -> ExitCode {
    let cli = Cli::parse();
    consign_api::logging::init(cli.log_format);

    match consign_api::cli::run(cli) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::CheckFailed) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
