//! `daedalus`: a sidecar for Apache Cassandra. See README.md and ARCHITECTURE.md.

mod cli;
mod esop_cli;
mod http;
mod jmx_command;
mod jmx_credentials;
mod logging;
mod once;
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
        Command::Serve(args) => serve::run(args).map(|()| ExitCode::SUCCESS),
        Command::Jmx(args) => jmx_command::run(args).map(|()| ExitCode::SUCCESS),
        Command::Backup(args) => esop_cli::backup(args),
        Command::List(args) => esop_cli::list(args),
        Command::RemoveBackup(args) => esop_cli::remove_backup(args),
        Command::CommitlogBackup(args) => esop_cli::commitlog_backup(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("daedalus: {error:#}");
            ExitCode::FAILURE
        }
    }
}
