//! Command-line arguments, hand-rolled: three subcommands and one flag do not
//! justify an argument-parser's code size in a binary meant to stay tiny.

use std::net::SocketAddr;

/// Loopback by default: exposing node facts on the LAN is an explicit choice.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9750";

pub const HELP: &str = "\
pictl-agent: per-node health agent for pictl

Usage:
  pictl-agent serve [--listen ADDR] [--publish-config FILE]
                                      serve /healthz, /metrics and /v1/report
  pictl-agent report [--pretty]       collect once and print the JSON report
  pictl-agent certificates --write FILE
                                      note when the first K3s certificate ends
                                      (root; K3s's unit runs it after each start
                                      so that the daemon, unprivileged, knows)
  pictl-agent share --listen ADDR --for SECONDS [--port-file PATH] --file URLPATH=FILE...
                                      serve these files read-only for a while
                                      (pictl's node-to-node artifact copies)
  pictl-agent --version | --help

Options:
  --listen ADDR   address to listen on [default: 127.0.0.1:9750]. Loopback only
                  answers local clients; for Prometheus to scrape the node, give
                  the node's address (e.g. 192.168.1.10:9750) or 0.0.0.0:9750.
  --publish-config FILE
                  publish Node conditions as FILE says [default:
                  /etc/pictl-agent/publish.conf; not publishing when it is absent].
                  Its metrics_listen = IPv4:PORT and metrics_peers = CIDR[,CIDR]
                  keys add a /metrics and /healthz listener on the pod network,
                  answering only those peers (an in-cluster Prometheus).
                  Its api_spki_sha256 = HEX[,HEX] key pins the API server's
                  key (sha256 of its SubjectPublicKeyInfo) beside the CA.
  --pretty        indent the JSON report
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve {
        listen: SocketAddr,
        /// `None`: the default path, optional; `Some`: given, required.
        publish_config: Option<String>,
    },
    Report {
        pretty: bool,
    },
    /// `certificates --write FILE`.
    Certificates {
        write: String,
    },
    Share(crate::share::ShareConfig),
    Version,
    Help,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("no command given (expected serve or report)")]
    MissingCommand,
    #[error("unknown argument {0:?}")]
    UnknownArgument(String),
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error("{flag} {value:?} is not valid: {why}")]
    InvalidValue {
        flag: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("--listen {value:?} is not an address like 127.0.0.1:9750")]
    InvalidAddress {
        value: String,
        #[source]
        source: std::net::AddrParseError,
    },
}

pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, UsageError> {
    let mut args = args.into_iter();
    let first = args.next().ok_or(UsageError::MissingCommand)?;
    match first.as_str() {
        "-h" | "--help" | "help" => Ok(Command::Help),
        "-V" | "--version" | "version" => Ok(Command::Version),
        "serve" => {
            let (mut listen, mut publish_config) = (None, None);
            while let Some(arg) = args.next() {
                let (flag, value) = match arg.split_once('=') {
                    Some((f @ ("--listen" | "--publish-config"), v)) => {
                        (f.to_owned(), v.to_owned())
                    }
                    None if arg == "--listen" || arg == "--publish-config" => {
                        let name = if arg == "--listen" {
                            "--listen"
                        } else {
                            "--publish-config"
                        };
                        (arg, args.next().ok_or(UsageError::MissingValue(name))?)
                    }
                    _ if arg == "-h" || arg == "--help" => return Ok(Command::Help),
                    _ => return Err(UsageError::UnknownArgument(arg)),
                };
                if flag == "--listen" {
                    listen = Some(value);
                } else {
                    publish_config = Some(value);
                }
            }
            let value = listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
            let listen = value
                .parse()
                .map_err(|source| UsageError::InvalidAddress { value, source })?;
            Ok(Command::Serve {
                listen,
                publish_config,
            })
        }
        "report" => {
            let mut pretty = false;
            for arg in args {
                match arg.as_str() {
                    "--pretty" => pretty = true,
                    "-h" | "--help" => return Ok(Command::Help),
                    _ => return Err(UsageError::UnknownArgument(arg)),
                }
            }
            Ok(Command::Report { pretty })
        }
        "share" => share(args),
        "certificates" => certificates(args),
        _ => Err(UsageError::UnknownArgument(first)),
    }
}

/// `certificates --write FILE`.
fn certificates(mut args: impl Iterator<Item = String>) -> Result<Command, UsageError> {
    let mut write = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--write" => write = Some(args.next().ok_or(UsageError::MissingValue("--write"))?),
            "-h" | "--help" => return Ok(Command::Help),
            _ => match arg.strip_prefix("--write=") {
                Some(v) => write = Some(v.to_owned()),
                None => return Err(UsageError::UnknownArgument(arg)),
            },
        }
    }
    let write = write.ok_or(UsageError::MissingValue("--write"))?;
    Ok(Command::Certificates { write })
}

/// `share --listen ADDR --for SECONDS [--port-file PATH] --file URLPATH=FILE...`
fn share(mut args: impl Iterator<Item = String>) -> Result<Command, UsageError> {
    let (mut listen, mut lifetime, mut port_file) = (None, None, None);
    let mut files = Vec::new();
    while let Some(flag) = args.next() {
        let flag: &'static str = match flag.as_str() {
            "--listen" => "--listen",
            "--for" => "--for",
            "--port-file" => "--port-file",
            "--file" => "--file",
            "-h" | "--help" => return Ok(Command::Help),
            _ => return Err(UsageError::UnknownArgument(flag)),
        };
        let value = args.next().ok_or(UsageError::MissingValue(flag))?;
        let invalid = |why| UsageError::InvalidValue {
            flag,
            value: value.clone(),
            why,
        };
        match flag {
            "--listen" => {
                let addr = value.parse().map_err(|source| UsageError::InvalidAddress {
                    value: value.clone(),
                    source,
                })?;
                listen = Some(addr);
            }
            "--for" => {
                let secs: u64 = value
                    .parse()
                    .map_err(|_| invalid("not a number of seconds"))?;
                lifetime = Some(std::time::Duration::from_secs(secs));
            }
            "--port-file" => port_file = Some(value.into()),
            _ => {
                let (path, file) = value
                    .split_once('=')
                    .filter(|(p, f)| p.starts_with('/') && f.starts_with('/'))
                    .ok_or_else(|| invalid("expected /URLPATH=/FILE"))?;
                files.push((path.to_owned(), file.into()));
            }
        }
    }
    let listen = listen.ok_or(UsageError::MissingValue("--listen"))?;
    let lifetime = lifetime.ok_or(UsageError::MissingValue("--for"))?;
    if files.is_empty() {
        return Err(UsageError::MissingValue("--file"));
    }
    Ok(Command::Share(crate::share::ShareConfig {
        listen,
        files,
        port_file,
        lifetime,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn serve_defaults_to_loopback() {
        let want: SocketAddr = DEFAULT_LISTEN.parse().expect("valid");
        assert_eq!(
            p(&["serve"]),
            Ok(Command::Serve {
                listen: want,
                publish_config: None
            })
        );
        assert!(want.ip().is_loopback());
    }

    #[test]
    fn listen_takes_a_separate_or_attached_value() {
        let want = Command::Serve {
            listen: "0.0.0.0:9100".parse().expect("valid"),
            publish_config: None,
        };
        assert_eq!(p(&["serve", "--listen", "0.0.0.0:9100"]), Ok(want.clone()));
        assert_eq!(p(&["serve", "--listen=0.0.0.0:9100"]), Ok(want));
        assert_eq!(
            p(&["serve", "--listen"]),
            Err(UsageError::MissingValue("--listen"))
        );
        assert!(matches!(
            p(&["serve", "--listen", "nope"]),
            Err(UsageError::InvalidAddress { .. })
        ));
    }

    #[test]
    fn publish_config_takes_a_value_beside_listen() {
        let want = Command::Serve {
            listen: DEFAULT_LISTEN.parse().expect("valid"),
            publish_config: Some("/etc/x.conf".into()),
        };
        assert_eq!(
            p(&["serve", "--publish-config", "/etc/x.conf"]),
            Ok(want.clone())
        );
        assert_eq!(p(&["serve", "--publish-config=/etc/x.conf"]), Ok(want));
        assert_eq!(
            p(&["serve", "--publish-config"]),
            Err(UsageError::MissingValue("--publish-config"))
        );
    }

    #[test]
    fn certificates_needs_the_file_to_write() {
        let want = Ok(Command::Certificates {
            write: "/run/x.json".into(),
        });
        assert_eq!(p(&["certificates", "--write", "/run/x.json"]), want);
        assert_eq!(p(&["certificates", "--write=/run/x.json"]), want);
        assert_eq!(
            p(&["certificates"]),
            Err(UsageError::MissingValue("--write"))
        );
        assert_eq!(
            p(&["certificates", "--write"]),
            Err(UsageError::MissingValue("--write"))
        );
        assert!(matches!(
            p(&["certificates", "-x"]),
            Err(UsageError::UnknownArgument(_))
        ));
    }

    #[test]
    fn report_version_help_and_mistakes() {
        assert_eq!(p(&["report"]), Ok(Command::Report { pretty: false }));
        assert_eq!(
            p(&["report", "--pretty"]),
            Ok(Command::Report { pretty: true })
        );
        assert_eq!(p(&["--version"]), Ok(Command::Version));
        assert_eq!(p(&["--help"]), Ok(Command::Help));
        assert_eq!(p(&[]), Err(UsageError::MissingCommand));
        assert_eq!(
            p(&["report", "-x"]),
            Err(UsageError::UnknownArgument("-x".into()))
        );
        assert_eq!(
            p(&[
                "share",
                "--listen",
                "10.0.0.1:0",
                "--for",
                "60",
                "--file",
                "/a/k3s=/x/k3s"
            ]),
            Ok(Command::Share(crate::share::ShareConfig {
                listen: "10.0.0.1:0".parse().expect("valid"),
                files: vec![("/a/k3s".into(), "/x/k3s".into())],
                port_file: None,
                lifetime: std::time::Duration::from_secs(60),
            }))
        );
        assert!(matches!(
            p(&[
                "share",
                "--listen",
                "10.0.0.1:0",
                "--for",
                "60",
                "--file",
                "k3s=/x"
            ]),
            Err(UsageError::InvalidValue { flag: "--file", .. })
        ));
        assert_eq!(
            p(&["share", "--listen", "10.0.0.1:0", "--for", "60"]),
            Err(UsageError::MissingValue("--file"))
        );
        assert_eq!(
            p(&["status"]),
            Err(UsageError::UnknownArgument("status".into()))
        );
    }
}
