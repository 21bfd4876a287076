//! The `pictl` binary: wires logging and the async runtime, then runs the CLI.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // kube, reqwest and russh all use rustls; pick the provider once, first.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let cli = pictl::cli::Cli::parse();
    let default_level = match cli.verbose {
        0 => "warn",
        1 => "pictl=info",
        2 => "pictl=debug",
        _ => "trace",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        pictl::cli::LogFormat::Json => logs.json().with_ansi(false).init(),
        pictl::cli::LogFormat::Text => logs
            .with_ansi(pictl::cli::defaults::colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
            .init(),
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pictl: cannot start the async runtime: {e}");
            return ExitCode::from(pictl::cli::EXIT_FAILURE);
        }
    };
    runtime.block_on(pictl::cli::run(cli))
}
