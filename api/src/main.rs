//! The `consign` binary: parses the command line, sets up logging, and runs one
//! subcommand. Errors are printed with their whole cause chain, each cause once.

use std::num::{IntErrorKind, ParseIntError};
use std::process::ExitCode;

use clap::Parser;
use clap::error::{ContextKind, ContextValue, ErrorKind};

use consign_api::cli::{Cli, Outcome};
use consign_api::logging::LogFormat;

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|error| with_number_tip(error).exit());
    let format = cli.log_format;
    let server = matches!(cli.command, consign_api::cli::Command::Serve(_));
    consign_api::logging::init(format, server);

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

/// Adds a tip to clap's error for an option value that is not a whole number, whose
/// reason alone ("invalid digit found in string") does not say what to type instead.
/// A negative number reaches clap as an unknown argument, so that error gets the tip
/// too.
fn with_number_tip(mut error: clap::Error) -> clap::Error {
    const WHOLE_NUMBER: &str =
        "give a whole number in digits 0-9, with no sign, unit or separator, such as 16";
    let tip = match error.kind() {
        ErrorKind::ValueValidation => {
            match std::error::Error::source(&error)
                .and_then(|source| source.downcast_ref::<ParseIntError>())
                .map(ParseIntError::kind)
            {
                Some(IntErrorKind::PosOverflow) => "the number is larger than this option takes",
                Some(_) => WHOLE_NUMBER,
                None => return error,
            }
        }
        ErrorKind::UnknownArgument => match error.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(argument))
                if argument.parse::<i64>().is_ok_and(|n| n < 0) =>
            {
                WHOLE_NUMBER
            }
            _ => return error,
        },
        _ => return error,
    };
    error.insert(
        ContextKind::Suggested,
        ContextValue::StyledStrs(vec![tip.into()]),
    );
    error
}
