//! `daedalus man-pages DIR` (hidden): the manual pages the packages install, `daedalus.1` and one per command
//! (`daedalus-serve.1`, ...), rendered from the same clap definitions as `--help`, so they cannot drift from the
//! binary. `scripts/package` runs it.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::Cli;

pub fn write(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut command = Cli::command();
    // Built, so that the global flags (--log, --log-format) show on every command's page too.
    command.build();
    render(&command, "daedalus", dir)?;
    // clap's own `help` command needs no page of its own.
    let documented = |sub: &&clap::Command| !sub.is_hide_set() && sub.get_name() != "help";
    for subcommand in command.get_subcommands().filter(documented) {
        render(
            subcommand,
            &format!("daedalus-{}", subcommand.get_name()),
            dir,
        )?;
    }
    Ok(())
}

fn render(command: &clap::Command, name: &str, dir: &Path) -> anyhow::Result<()> {
    let page = command
        .clone()
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .with_context(|| format!("cannot render the manual page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, roff).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_command_gets_a_page_that_names_its_flags() {
        let dir = tempfile::tempdir().unwrap();
        super::write(dir.path()).unwrap();
        let main = std::fs::read_to_string(dir.path().join("daedalus.1")).unwrap();
        assert!(main.contains(".TH daedalus 1"), "{main}");
        let restore = std::fs::read_to_string(dir.path().join("daedalus-restore.1")).unwrap();
        assert!(restore.contains("restored\\-marker"), "{restore}");
        let serve = std::fs::read_to_string(dir.path().join("daedalus-serve.1")).unwrap();
        assert!(serve.contains("DAEDALUS_LISTEN"), "{serve}");
        assert!(!dir.path().join("daedalus-man-pages.1").exists());
        assert!(!dir.path().join("daedalus-help.1").exists());
    }
}
