//! Binary entry point of the health agent: parses arguments and wires the
//! collectors to stdout (`report`) or to the HTTP server (`serve`).

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::PoisonError;

use pictl_agent::cli::{self, Command, HELP};
use pictl_agent::collect::{Sources, collect};
use pictl_agent::http::{DEFAULT_CACHE_TTL, Server};
use pictl_agent::report::REPORT_VERSION;
use pictl_agent::{Error, error_chain, pod_metrics, publish};

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pictl-agent: {}\n\n{HELP}", error_chain(&e));
            return ExitCode::from(2);
        }
    };
    let outcome = match command {
        Command::Help => {
            print!("{HELP}");
            Ok(())
        }
        Command::Version => {
            println!(
                "pictl-agent {} (report schema v{REPORT_VERSION})",
                env!("CARGO_PKG_VERSION")
            );
            Ok(())
        }
        Command::Report { pretty } => report(pretty),
        Command::Certificates { write } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let path = std::path::Path::new(&write);
            pictl_agent::collect::certs::write_note(&Sources::system(), now, path)
        }
        Command::Share(cfg) => {
            return match pictl_agent::share::run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pictl-agent: {}", error_chain(&e));
                    ExitCode::FAILURE
                }
            };
        }
        Command::Serve {
            listen,
            publish_config,
        } => serve(listen, publish_config),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pictl-agent: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Starts publishing and the pod-network metrics listener (when
/// configured) on their own threads, then serves.
fn serve(listen: SocketAddr, publish_config: Option<String>) -> Result<(), Error> {
    let cfg = publish::load(publish_config.as_deref())?;
    let pod = cfg.as_ref().and_then(|c| c.metrics.clone());
    let pod_status = pod.as_ref().map(pod_metrics::status);
    let publishing = match cfg {
        Some(cfg) => {
            let status = publish::start(cfg)?;
            eprintln!("pictl-agent: publishing Node conditions");
            Some(status)
        }
        None => None,
    };
    let sources = Sources::system();
    let reported = pod_status.clone();
    let source = move || {
        let mut r = collect(&sources);
        r.publishing = publishing
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clone());
        r.metrics_listener = reported
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clone());
        r
    };
    let server = Server::bind(listen, Box::new(source), DEFAULT_CACHE_TTL)?;
    let addr = server.local_addr().map_or(listen, |a| a);
    eprintln!(
        "pictl-agent {}: listening on http://{addr}",
        env!("CARGO_PKG_VERSION")
    );
    if let (Some(pod), Some(status)) = (pod, pod_status) {
        pod_metrics::start(pod, status, server.reports())?;
    }
    server.run()
}

/// One report on stdout; the exit status says whether it was written, not the
/// node's health (that is in the report).
fn report(pretty: bool) -> Result<(), Error> {
    let r = collect(&Sources::system());
    let mut out = std::io::stdout().lock();
    let written = if pretty {
        serde_json::to_writer_pretty(&mut out, &r)
    } else {
        serde_json::to_writer(&mut out, &r)
    };
    written.map_err(|e| Error::WriteReportFailed(e.into()))?;
    writeln!(out)
        .and_then(|()| out.flush())
        .map_err(Error::WriteReportFailed)
}
