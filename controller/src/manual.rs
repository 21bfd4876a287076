//! Documentation generated from the clap definitions in [`crate::cli`]:
//! shell completion scripts and the man page. Pure text generation; the
//! caller prints it. Generating from the same `Cli` the binary parses
//! keeps them from drifting from the real flags.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "pictl", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The man page, section 1, as roff.
pub fn man_page() -> std::io::Result<String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Writes `pictl.1` and one page per subcommand (`pictl-apply.1`, …: the
/// pages the main page's SUBCOMMANDS section names) into `dir`.
pub fn write_man_pages(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)
}
