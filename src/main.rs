//! `daedalus`: a sidecar for Apache Cassandra. See README.md and ARCHITECTURE.md.

mod args;
mod cli;
mod esop_cli;
mod http;
mod jmx_command;
mod jmx_credentials;
mod logging;
mod man_pages;
mod once;
mod operation_store_args;
mod restore_marker;
mod serve;
mod signals;
mod version;

use std::process::ExitCode;

use crate::cli::Command;

/// Stack of each thread that runs operations. Tokio's default, 2 MiB, is too tight for a restore that recreates a
/// table over the CQL driver in a debug build; the memory is only reserved, and touched as far as it is used.
const OPERATIONS_STACK_BYTES: usize = 8 * 1024 * 1024;

fn main() -> ExitCode {
    pin_mmap_threshold();
    daedalus_operations::crypto::install_default_provider();
    let (cli, secrets_on_command_line) = cli::parse();
    if let Err(error) = logging::init(cli.log_format, &cli.log) {
        eprintln!("daedalus: {error:#}");
        return ExitCode::from(2);
    }
    for secret in secrets_on_command_line {
        tracing::warn!(
            flag = secret.flag,
            instead = secret.env,
            "a secret given on the command line can be read by every local user (ps, /proc/PID/cmdline): \
             set it in the environment or in the --jmx-credentials file instead"
        );
    }
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args).map(|()| ExitCode::SUCCESS),
        Command::Jmx(args) => jmx_command::run(args).map(|()| ExitCode::SUCCESS),
        Command::Backup(args) => esop_cli::backup(args),
        Command::List(args) => esop_cli::list(args),
        Command::RemoveBackup(args) => esop_cli::remove_backup(args),
        Command::CommitlogBackup(args) => esop_cli::commitlog_backup(args),
        Command::Restore(args) => esop_cli::restore(*args),
        Command::CommitlogRestore(args) => esop_cli::commitlog_restore(args),
        Command::Verify(args) => esop_cli::verify(args),
        Command::Store(args) => operation_store_args::run(args).map(|()| ExitCode::SUCCESS),
        Command::ManPages { dir } => man_pages::write(&dir).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("daedalus: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc raises its mmap threshold each time a large block is freed, and from then on serves the upload buffers of a
/// backup (5 MiB parts) from its heaps, which keep the memory after the parts are sent. A fixed threshold keeps those
/// buffers mapped on their own, so they go back to the system when freed and the sidecar's memory stays flat.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn pin_mmap_threshold() {
    // SAFETY: mallopt only sets an allocator parameter; it is called first thing in main, before any other thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn pin_mmap_threshold() {}
