//! Binary entry point of the health agent (collectors and HTTP come in the
//! health-agent issue); for now it only identifies itself.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "pictl-agent {}: the health agent is not implemented yet (report schema v{})",
        env!("CARGO_PKG_VERSION"),
        pictl_agent::report::REPORT_VERSION
    );
    ExitCode::from(2)
}
