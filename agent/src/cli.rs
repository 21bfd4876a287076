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
  pictl-agent --version | --help

Options:
  --listen ADDR   address to listen on [default: 127.0.0.1:9750]. Loopback only
                  answers local clients; for Prometheus to scrape the node, give
                  the node's address (e.g. 192.168.1.10:9750) or 0.0.0.0:9750.
  --publish-config FILE
                  publish Node conditions as FILE says [default:
                  /etc/pictl-agent/publish.conf; not publishing when it is absent]
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
        _ => Err(UsageError::UnknownArgument(first)),
    }
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
            p(&["status"]),
            Err(UsageError::UnknownArgument("status".into()))
        );
    }
}
