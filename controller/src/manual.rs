//! Documentation generated from the clap definitions: shell completion
//! scripts and the man pages. Pure text generation; the caller passes the
//! `clap::Command` it parses with (`Cli::command()`) and prints the text.
//! Generating from the same definitions the binary parses keeps them from
//! drifting from the real flags.

use clap_complete::Shell;

/// The completion script for `shell`.
pub fn completions(mut command: clap::Command, shell: Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "pictl", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The man page, section 1, as roff.
pub fn man_page(command: clap::Command) -> std::io::Result<String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command).render(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Writes `pictl.1` and one page per subcommand (`pictl-apply.1`, …: the
/// pages the main page's SUBCOMMANDS section names) into `dir`.
pub fn write_man_pages(command: clap::Command, dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(command, dir)
}
