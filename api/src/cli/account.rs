//! `consign account create` and `consign account password`: open an account or set its
//! password on the command line, for the first administrator, for an administrator who
//! lost the password, and for scripts. They need the data directory to itself, so they
//! run while the server is stopped. With the server running, `POST /api/accounts` and
//! `POST /api/accounts/{login}/password` do the same for an administrator.

use std::io::BufRead;

use anyhow::{Context, bail};
use clap::ValueEnum;
use consign_ledger::{EmbeddedLedger, EmbeddedOptions, LedgerError};
use consign_projections::model::Model;
use consign_schemas::Position;
use consign_schemas::events::Role;

use super::{DataDirArgs, Outcome};
use crate::app::{
    ACCOUNT_CHAIN, ApiError, CLI_ACTOR, NewAccount, account_request, check_account_password,
    credential_request, hash_password, login_taken,
};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Admin,
    Sender,
    Billing,
    Auditor,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => Role::Admin,
            RoleArg::Sender => Role::Sender,
            RoleArg::Billing => Role::Billing,
            RoleArg::Auditor => Role::Auditor,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub data: DataDirArgs,

    /// Login name: letters, digits, '.', '_', '-' or '@', up to 64 characters.
    #[arg(long)]
    pub login: String,

    /// Role of the account, which decides the routes it may use.
    #[arg(long, value_enum)]
    pub role: RoleArg,

    /// E-mail address of the account; receipts go there.
    #[arg(long)]
    pub email: String,

    /// Name shown to recipients (default: the login).
    #[arg(long)]
    pub name: Option<String>,

    /// Read the password from the first line of standard input. Without it, the
    /// password comes from the CONSIGN_ACCOUNT_PASSWORD environment variable.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, clap::Args)]
pub struct PasswordArgs {
    #[command(flatten)]
    pub data: DataDirArgs,

    /// Login of the account whose password is set.
    #[arg(long)]
    pub login: String,

    /// Read the new password from the first line of standard input. Without it, the
    /// password comes from the CONSIGN_ACCOUNT_PASSWORD environment variable.
    #[arg(long)]
    pub password_stdin: bool,
}

/// Runs `consign account create`.
///
/// # Errors
///
/// No password was given, an input is invalid, the login is taken, or the ledger
/// cannot be opened or written.
pub fn create(args: CreateArgs) -> anyhow::Result<Outcome> {
    if args
        .name
        .as_deref()
        .is_some_and(|name| name.trim().is_empty())
    {
        bail!("--name is empty; give the name recipients see, or leave it out to use the login");
    }
    let password = read_password(args.password_stdin)?;
    let account = NewAccount {
        login: args.login.clone(),
        display_name: args.name.clone().unwrap_or_else(|| args.login.clone()),
        email: args.email.clone(),
        role: args.role.into(),
        password,
    };
    check_inputs(&account)?;
    let (id, position) = if args.data.kafka.is_some() {
        let ledger = super::backend::open_ledger(
            &args.data,
            EmbeddedOptions::default(),
            super::backend::Role::Follow,
        )?;
        append_account(&ledger, &account).map_err(|error| {
            // A rejected account (a taken login) is no failure to reach the server.
            if error.downcast_ref::<LedgerError>().is_none() {
                return error;
            }
            error.context(format!(
                "the account was handed to the server that sequences chain {ACCOUNT_CHAIN} on \
                 Kafka, and none recorded it; start `consign serve --kafka` first, then run \
                 this command again"
            ))
        })?
    } else {
        open_account(&args.data.data_dir, &account)?
    };
    println!(
        "opened account {} ({id}) with role {} at position {}",
        account.login.trim(),
        args.role
            .to_possible_value()
            .expect("every role has a name on the command line")
            .get_name(),
        position
    );
    Ok(Outcome::Success)
}

/// Runs `consign account password`.
///
/// # Errors
///
/// No password was given, it is too short or too long, no account has the login, or
/// the ledger cannot be opened or written.
pub fn set_password(args: PasswordArgs) -> anyhow::Result<Outcome> {
    let password = read_password(args.password_stdin)?;
    check_account_password("password", &password).map_err(|error| {
        let message = match error {
            ApiError::Invalid { message, .. } => message,
            other => other.to_string(),
        };
        anyhow::Error::msg(message.replacen("password", "the new password", 1))
    })?;
    let data_dir = &args.data.data_dir;
    if args.data.kafka.is_none() {
        EmbeddedLedger::check_files(data_dir)
            .with_context(|| format!("cannot open the ledger in {}", data_dir.display()))?;
    }
    if args.data.kafka.is_none() && !data_dir.join("ledger/CURRENT").exists() {
        bail!(
            "{} has no ledger; pass the --data-dir of the server whose account you mean",
            data_dir.display()
        );
    }
    let ledger = if args.data.kafka.is_some() {
        super::backend::open_ledger(
            &args.data,
            EmbeddedOptions::default(),
            super::backend::Role::Follow,
        )?
    } else {
        EmbeddedLedger::open(data_dir, EmbeddedOptions::default())
            .with_context(|| format!("cannot open the ledger in {}", data_dir.display()))?
    };

    let model = account_model(&ledger)?;
    let Some(account) = model.account_by_login(&args.login).cloned() else {
        bail!(
            "no account has the login {:?}; check the spelling, or open one with \
             `consign account create`",
            args.login
        );
    };
    if crate::app::verify_password_blocking(&password, &account.password_hash) {
        bail!(
            "the new password is the current password of {}; choose another",
            account.login
        );
    }
    let hash = hash_password(&password).map_err(anyhow::Error::msg)?;
    let appended = ledger.append_blocking(credential_request(account.id, hash, CLI_ACTOR))?;
    println!(
        "set the password of account {} ({}) at position {}; its sessions have ended",
        account.login, account.id, appended.events[0].position
    );
    Ok(Outcome::Success)
}

/// Opens `account` in the ledger at `data_dir`, which no other process may hold open,
/// and returns its id and position on the account chain.
///
/// # Errors
///
/// An input is invalid, the login is taken, or the ledger cannot be opened or written.
pub fn open_account(
    data_dir: &std::path::Path,
    account: &NewAccount,
) -> anyhow::Result<(consign_schemas::AccountId, Position)> {
    check_inputs(account)?;
    let ledger = EmbeddedLedger::open(data_dir, EmbeddedOptions::default())
        .with_context(|| format!("cannot open the ledger in {}", data_dir.display()))?;
    append_account(&ledger, account)
}

/// Checks the login, name, e-mail address and password of `account` before the ledger
/// is opened, so that a bad value creates no data directory. Whether the login is taken
/// is checked against the account chain when the account is appended.
fn check_inputs(account: &NewAccount) -> anyhow::Result<()> {
    account_request(&Model::new(), account, String::new(), CLI_ACTOR)
        .map(|_| ())
        .map_err(|error| anyhow::Error::msg(with_option_names(error)))
}

/// Returns the message of an account check with the API's field names replaced by the
/// options that set them on the command line.
fn with_option_names(error: ApiError) -> String {
    let ApiError::Invalid { field, message } = error else {
        return error.to_string();
    };
    let option = match field.as_str() {
        "display_name" => "--name",
        "login" => "--login",
        "email" => "--email",
        "role" => "--role",
        _ => return message,
    };
    match message.strip_prefix(field.as_str()) {
        Some(rest) => format!("{option}{rest}"),
        None => format!("{option}: {message}"),
    }
}

/// Appends the opening of `account` after checking its login against the account
/// chain.
fn append_account(
    ledger: &EmbeddedLedger,
    account: &NewAccount,
) -> anyhow::Result<(consign_schemas::AccountId, Position)> {
    let model = account_model(ledger)?;
    let hash = hash_password(&account.password).map_err(anyhow::Error::msg)?;
    let (id, request) =
        account_request(&model, account, hash, CLI_ACTOR).map_err(anyhow::Error::msg)?;
    let appended = ledger.append_blocking(request)?;
    if appended.replayed {
        bail!(login_taken(&account.login));
    }
    Ok((id, appended.events[0].position))
}

/// Folds the account chain into a model of the accounts and their logins.
fn account_model(ledger: &EmbeddedLedger) -> anyhow::Result<Model> {
    let mut model = Model::new();
    let mut from = Position::new(0);
    loop {
        let events = ledger.read(ACCOUNT_CHAIN, from, 10_000)?;
        let Some(last) = events.last() else { break };
        from = last.position().next();
        for event in &events {
            model.apply(event)?;
        }
    }
    Ok(model)
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let password = line.trim_end_matches(['\r', '\n']).to_owned();
        if password.is_empty() {
            bail!("standard input had no password; pipe one line with the password");
        }
        return Ok(password);
    }
    match std::env::var("CONSIGN_ACCOUNT_PASSWORD") {
        Ok(password) if !password.is_empty() => Ok(password),
        _ => bail!(
            "no password given: pipe it with --password-stdin, or set CONSIGN_ACCOUNT_PASSWORD"
        ),
    }
}
