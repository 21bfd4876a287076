//! The commands beside plan and apply: reset, kubeconfig, backup, restore.

use std::process::ExitCode;

use super::out::{fail, note, print_out};
use super::{Cli, finish, load, options};
use crate::runner::{self, Mode};
use crate::write::Writer;

pub(super) async fn backup(cli: &Cli) -> ExitCode {
    let inv = match load(cli) {
        Ok(inv) => inv,
        Err(code) => return code,
    };
    let opts = options(cli, Mode::Apply, false, runner::Upgrade::default());
    let result = runner::backup(&inv, &opts).await;
    opts.progress.finish();
    match result {
        Ok(path) => print_out(&format!("{}\n", path.display()), ExitCode::SUCCESS),
        Err(e) => fail(format_args!("pictl backup: {}", crate::error_chain(&e))),
    }
}

pub(super) async fn restore(cli: &Cli, file: &std::path::Path, yes: bool) -> ExitCode {
    let inv = match load(cli) {
        Ok(inv) => inv,
        Err(code) => return code,
    };
    let mode = if yes { Mode::Apply } else { Mode::Plan };
    let opts = options(cli, mode, false, runner::Upgrade::default());
    let result = runner::restore(&inv, &opts, file, yes).await;
    opts.progress.finish();
    match result {
        Ok(plan) if yes => print_out(&format!("restored: {plan}\n"), ExitCode::SUCCESS),
        Ok(plan) => {
            note("pictl restore: nothing was changed; run again with --yes to restore");
            print_out(&format!("would {plan}\n"), ExitCode::from(2))
        }
        Err(e) => fail(format_args!("pictl restore: {}", crate::error_chain(&e))),
    }
}

pub(super) async fn reset(
    cli: &Cli,
    yes: bool,
    nodes: &[String],
    kubeconfig: Option<&std::path::Path>,
) -> ExitCode {
    let inv = match load(cli) {
        Ok(inv) => inv,
        Err(code) => return code,
    };
    if let Some(unknown) = nodes
        .iter()
        .find(|n| !inv.nodes.iter().any(|m| &m.name == *n))
    {
        return fail(format_args!(
            "pictl reset: no node named {unknown:?} in {}",
            cli.inventory.display()
        ));
    }
    let mode = if yes { Mode::Apply } else { Mode::Plan };
    let opts = options(cli, mode, false, runner::Upgrade::default());
    let result = runner::reset(&inv, &opts, nodes, yes).await;
    opts.progress.finish();
    if !yes && result.as_ref().is_ok_and(runner::RunReport::changed) {
        note("pictl reset: nothing was removed; run again with --yes to remove what is listed");
    }
    if yes
        && let Some(path) = kubeconfig
        && let Err(e) =
            crate::kubeconfig::forget_in_file(path, &inv.cluster.name, &Writer::for_apply())
    {
        return fail(format_args!("pictl reset: {}", crate::error_chain(&e)));
    }
    finish(cli, mode, result)
}

pub(super) fn write_kubeconfig(cli: &Cli, out: Option<&std::path::Path>) -> ExitCode {
    let inv = match load(cli) {
        Ok(inv) => inv,
        Err(code) => return code,
    };
    let ours_path = crate::state::kubeconfig_path(&inv);
    let ours = match std::fs::read_to_string(&ours_path) {
        Ok(k) => k,
        Err(e) => {
            return fail(format_args!(
                "pictl: {}: {e} (run `pictl apply` first)",
                ours_path.display()
            ));
        }
    };
    let Some(out) = out else {
        return print_out(&ours, ExitCode::SUCCESS);
    };
    match crate::kubeconfig::merge_into_file(out, &ours, &Writer::for_apply()) {
        Ok(()) => {
            note(format_args!(
                "wrote context {} to {} (0600)",
                inv.cluster.name,
                out.display()
            ));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format_args!("pictl: {}", crate::error_chain(&e))),
    }
}
