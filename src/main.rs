//! `daedalus`: a sidecar for Apache Cassandra. See README.md and ARCHITECTURE.md.

mod cli;
mod http;
mod jmx_command;
mod jmx_credentials;
mod logging;
mod serve;
mod version;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = logging::init(cli.log_format, &cli.log) {
        eprintln!("daedalus: {error:#}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Jmx(args) => jmx_command::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("daedalus: {error:#}");
            ExitCode::FAILURE
        }
    }
}
