//! `pictl init`: a commented inventory from the nodes themselves, host
//! keys confirmed on the terminal or with `--accept-new`.

use super::*;

pub(super) async fn init(args: &InitArgs) -> ExitCode {
    let InitArgs {
        nodes,
        user,
        out,
        accept_new,
        identity_file,
        known_hosts,
        port,
        name,
        k3s_version,
        channel,
        mirror,
        passphrase_env,
    } = args;
    use std::io::IsTerminal;
    let host_keys = if *accept_new {
        crate::init::HostKeys::AcceptNew
    } else if std::io::stdin().is_terminal() {
        let known_hosts = known_hosts.clone();
        crate::init::HostKeys::Ask(Arc::new(move |address: &str, fingerprint: &str| {
            confirm_host_key(address, fingerprint, &known_hosts)
        }))
    } else {
        crate::init::HostKeys::Refuse
    };
    let opts = crate::init::InitOptions {
        cluster: name.clone(),
        addresses: nodes.clone(),
        user: user
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "root".into()),
        port: *port,
        identity_file: identity_file.clone(),
        known_hosts: known_hosts.clone(),
        host_keys,
        out: out.clone(),
        connect_timeout: Duration::from_secs(10),
        release: crate::init::Release {
            pin: match (k3s_version, channel) {
                (Some(v), _) => Some(crate::init::Pin::Version(v.clone())),
                (None, Some(c)) => Some(crate::init::Pin::Channel(c.clone())),
                (None, None) => None,
            },
            mirror: mirror.as_ref().map(|m| m.trim_end_matches('/').to_string()),
        },
        passphrase_env: passphrase_env.clone(),
        passphrase_prompt: crate::init::Prompt(crate::runner::terminal_prompt()),
    };
    match crate::init::init(&opts).await {
        Ok(found) => {
            for (i, n) in found.iter().enumerate() {
                note(format_args!(
                    "{}: {} {} ({}{})",
                    n.address,
                    if i == 0 { "server" } else { "agent" },
                    crate::escape_controls(&n.hostname),
                    n.arch.name(),
                    n.pi_model
                        .as_deref()
                        .map(|m| format!(", {}", crate::escape_controls(m)))
                        .unwrap_or_default()
                ));
            }
            note(format_args!(
                "wrote {}; next: pictl validate -i {0} && pictl apply -i {0}",
                out.display()
            ));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format_args!("pictl init: {}", crate::error_chain(&e))),
    }
}

/// Shows a host key's fingerprint and asks on the terminal whether to
/// trust it, as OpenSSH does on a first contact.
fn confirm_host_key(address: &str, fingerprint: &str, known_hosts: &str) -> bool {
    out::ask(format_args!(
        "The authenticity of host {address} can't be established.\n\
         Its key fingerprint is {fingerprint}.\n\
         Trust it and record it in {known_hosts}? [y/N] "
    ));
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}
