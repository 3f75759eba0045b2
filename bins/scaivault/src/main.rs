//! `scaivault`: the command line, on the Rust client. Data goes to stdout, diagnostics to stderr;
//! exit codes: 0 success, 1 failure, 2 usage, 3 not found, 4 access denied, 5 unreachable.

mod cli;
mod commands;
mod config;
mod dotenv;
mod output;
mod time;

use std::process::ExitCode;

use clap::Parser;
use scaivault_client::Error;
use scaivault_client::api::ErrorCode;

/// Exit codes besides 0, 1 and 2 (clap's usage errors).
const EXIT_NOT_FOUND: u8 = 3;
const EXIT_DENIED: u8 = 4;
const EXIT_UNREACHABLE: u8 = 5;

fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<Error>() {
        Some(err) if err.is_not_found() => EXIT_NOT_FOUND,
        Some(Error::Unreachable(_)) => EXIT_UNREACHABLE,
        Some(err) => match err.code() {
            Some(ErrorCode::AccessDenied | ErrorCode::AuthenticationRequired | ErrorCode::TokenExpired) => {
                EXIT_DENIED
            }
            Some(ErrorCode::ServiceUnavailable) => EXIT_UNREACHABLE,
            _ => 1,
        },
        None => 1,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli).await {
        Ok(code) => code,
        // `scaivault export … | head -1`: the reader has what it wanted; no error, no panic.
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("scaivault: {e:#}");
            }
            ExitCode::from(exit_code(&e))
        }
    }
}
