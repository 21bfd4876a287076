//! `pictl status`: the table once, or redrawn with `--watch` until
//! interrupted.

use super::*;

pub(super) async fn status(cli: &Cli, watch: Option<u64>) -> ExitCode {
    let inv = match load(cli) {
        Ok(inv) => inv,
        Err(code) => return code,
    };
    let connector: Arc<dyn runner::Connector> =
        Arc::new(runner::SshConnector::interactive().read_only());
    let Some(every) = watch else {
        let rows = crate::status::collect(&inv, connector, usize::from(cli.concurrency)).await;
        let code = health_code(&rows);
        return match cli.output {
            OutputFormat::Human => print_out(&crate::status::table(&rows), code),
            OutputFormat::Json => print_out(
                &format!(
                    "{}\n",
                    serde_json::to_string_pretty(&rows).unwrap_or_default()
                ),
                code,
            ),
        };
    };
    watch_status(cli, &inv, connector, Duration::from_secs(every)).await
}

fn health_code(rows: &[crate::status::NodeStatus]) -> ExitCode {
    if rows.iter().all(crate::status::NodeStatus::healthy) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

/// Redraws the status every `every` until Ctrl-C (or the reader of stdout
/// goes away); exits with the last refresh's code.
async fn watch_status(
    cli: &Cli,
    inv: &Inventory,
    connector: Arc<dyn runner::Connector>,
    every: Duration,
) -> ExitCode {
    use std::io::Write;
    use tokio::signal::unix::{SignalKind, signal};
    // Registered now, so an interrupt that arrives while a refresh is being
    // gathered is not lost: it ends the watch at the next wait.
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    loop {
        let rows =
            crate::status::collect(inv, connector.clone(), usize::from(cli.concurrency)).await;
        let code = health_code(&rows);
        let frame = match cli.output {
            // Home, clear the screen, then the table: redrawn in place.
            OutputFormat::Human => format!(
                "\x1b[H\x1b[2J{} (every {} s, Ctrl-C to stop)\n\n{}",
                inv.cluster.name,
                every.as_secs(),
                crate::status::table(&rows)
            ),
            OutputFormat::Json => format!("{}\n", serde_json::to_string(&rows).unwrap_or_default()),
        };
        let mut out = std::io::stdout().lock();
        if out
            .write_all(frame.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return code;
        }
        drop(out);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            Some(()) = async { interrupt.as_mut()?.recv().await } => return code,
            Some(()) = async { terminate.as_mut()?.recv().await } => return code,
        }
    }
}
