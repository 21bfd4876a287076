//! [`SshTransport`]: the real [`Transport`], one russh session per node.
//!
//! Connecting checks the host key (or host certificate) against the
//! known_hosts files before anything else is sent, then authenticates; each
//! exec or upload is one SSH channel on that session (so they may run
//! concurrently). stdin is streamed in window-sized chunks, so a 60 MB
//! binary never sits in argv or in base64.
//! The edge: what to connect to is [`super::target`], opening the session
//! (through jump hosts too) is [`super::session`], building command
//! lines is [`super::command`]/[`super::sudo`], the file scripts are
//! [`super::upload`], host-key rules are [`super::known_hosts`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};

use super::command::{KILL_AFTER, RemoteCommand, TIMEOUT_STATUSES};
use super::error::{TransportError, is_connection_error};
use super::handshake::HostKeyCheck;
use super::hold::{self, Holding};
use super::known_hosts;
use super::session;
use super::sudo::{self, Refusal, SudoMode, WireCommand};
use super::target::{MIN_UPLOAD_RATE, SshTarget};
use super::upload;
use super::{BoxFuture, Output, Transport};

/// An authenticated SSH session to one node.
pub struct SshTransport {
    name: String,
    user: String,
    sudo: SudoMode,
    handle: Handle<HostKeyCheck>,
    /// The jump hosts' sessions `handle` runs over, first hop first.
    jumps: Vec<Handle<HostKeyCheck>>,
    round_trips: AtomicU64,
    /// sudo refused the password once: it is not sent again.
    sudo_refused: AtomicBool,
    /// The fingerprint of a host key this read-only run accepted unrecorded.
    unrecorded_key: Option<String>,
    known_hosts: std::path::PathBuf,
    upload_timeout: Duration,
    untimed_deadline: Duration,
    /// Commands kept running while the connection lives ([`Transport::hold`]).
    held: std::sync::Mutex<Vec<hold::Held>>,
}

impl fmt::Debug for SshTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshTransport")
            .field("name", &self.name)
            .field("user", &self.user)
            .field("closed", &self.handle.is_closed())
            .finish()
    }
}

impl SshTransport {
    /// Connects (through the target's jump hosts, if any), checks the host
    /// key of every hop and the node, and authenticates.
    pub async fn connect(target: SshTarget) -> Result<Self, TransportError> {
        let chain = session::connect(&target).await?;
        Ok(Self {
            name: target.name,
            user: target.user,
            sudo: target.sudo,
            handle: chain.node,
            jumps: chain.jumps,
            round_trips: AtomicU64::new(0),
            sudo_refused: AtomicBool::new(false),
            unrecorded_key: chain.unrecorded,
            known_hosts: target.known_hosts,
            upload_timeout: target.upload_timeout,
            untimed_deadline: target.untimed_deadline,
            held: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Say goodbye to the server (dropping the transport also ends the
    /// session, less politely).
    pub async fn close(&self) {
        for handle in std::iter::once(&self.handle).chain(self.jumps.iter().rev()) {
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
        }
    }

    fn wire(&self, cmd: &RemoteCommand, what: &str) -> Result<WireCommand, TransportError> {
        cmd.validate()
            .map_err(|source| TransportError::InvalidCommand {
                host: self.name.clone(),
                source,
            })?;
        let wire = self
            .sudo
            .wire(cmd, &self.user)
            .map_err(|source| TransportError::SudoSetup {
                host: self.name.clone(),
                what: what.to_owned(),
                source,
            })?;
        // One refused password is enough: trying it again would only count
        // towards the node locking the account.
        if wire.via_sudo && self.sudo_refused.load(Ordering::Relaxed) {
            return Err(self.password_refused());
        }
        if let (true, SudoMode::Password(_), Some(fingerprint)) =
            (wire.via_sudo, &self.sudo, &self.unrecorded_key)
        {
            return Err(TransportError::SudoPasswordWithheld {
                host: self.name.clone(),
                known_hosts: known_hosts::display_path(&self.known_hosts),
                fingerprint: fingerprint.clone(),
            });
        }
        Ok(wire)
    }

    fn channel_error(&self, source: russh::Error) -> TransportError {
        if self.handle.is_closed() || is_connection_error(&source) {
            TransportError::ConnectionLost {
                host: self.name.clone(),
                source: Some(source),
            }
        } else {
            TransportError::Channel {
                host: self.name.clone(),
                source,
            }
        }
    }

    /// One channel: send `wire.line`, stream the stdin preamble and `body`,
    /// collect output until the channel closes or the local deadline passes.
    async fn run(
        &self,
        what: &str,
        wire: &WireCommand,
        body: Option<&[u8]>,
        limits: Limits,
    ) -> Result<Output, TransportError> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        // One deadline from the channel request on: a stalled node can hang
        // the open as well as the transfer.
        let deadline = tokio::time::sleep(limits.local);
        tokio::pin!(deadline);
        let channel = tokio::select! {
            channel = self.open(wire) => channel?,
            () = &mut deadline => return Err(self.timed_out(what, limits.reported())),
        };
        let (reader, writer) = channel.split();
        let finished = tokio::select! {
            done = collect(reader) => Some(done),
            () = send_stdin(&writer, wire.stdin_prefix(), body) => None,
            () = &mut deadline => None,
        };
        let Some(collected) = finished else {
            // Only the deadline gets here: send_stdin never completes.
            // Best effort: sshd honours signal requests for non-root logins.
            let _ = writer.signal(Sig::KILL).await;
            let _ = writer.close().await;
            return Err(self.timed_out(what, limits.reported()));
        };
        let out = self.exited(collected)?;
        if let Some(after) = limits.node
            && TIMEOUT_STATUSES.contains(&out.status)
            && started.elapsed() >= after
        {
            return Err(self.timed_out(what, after));
        }
        self.check_sudo(what, wire, out)
    }

    /// A session channel with `wire.line` started on it.
    async fn open(&self, wire: &WireCommand) -> Result<Channel<client::Msg>, TransportError> {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.channel_error(e))?;
        channel
            .exec(true, wire.line.as_bytes())
            .await
            .map_err(|e| self.channel_error(e))?;
        Ok(channel)
    }

    /// The output with its exit status, or why the command never had one.
    fn exited(&self, collected: Collected) -> Result<Output, TransportError> {
        let Collected {
            mut out,
            status,
            refused,
        } = collected;
        if let Some(status) = status {
            out.status = status;
            return Ok(out);
        }
        if self.handle.is_closed() {
            return Err(TransportError::ConnectionLost {
                host: self.name.clone(),
                source: None,
            });
        }
        let reason = if refused {
            "the node refused to start the command"
        } else {
            "the channel closed without an exit status"
        };
        Err(TransportError::Channel {
            host: self.name.clone(),
            source: russh::Error::IO(std::io::Error::other(reason)),
        })
    }

    /// Strip the sudo wrapper's sentinel, or turn its absence into an error.
    fn check_sudo(
        &self,
        what: &str,
        wire: &WireCommand,
        mut out: Output,
    ) -> Result<Output, TransportError> {
        if !wire.via_sudo {
            return Ok(out);
        }
        match sudo::take_sentinel(&mut out.stderr, out.status) {
            Ok(()) => Ok(out),
            Err(Refusal::Password) => {
                self.sudo_refused.store(true, Ordering::Relaxed);
                Err(self.password_refused())
            }
            Err(Refusal::Other(reason)) => Err(TransportError::Sudo {
                host: self.name.clone(),
                what: what.to_owned(),
                reason,
            }),
        }
    }

    fn password_refused(&self) -> TransportError {
        TransportError::SudoPasswordRefused {
            host: self.name.clone(),
            user: self.user.clone(),
        }
    }

    fn timed_out(&self, what: &str, after: Duration) -> TransportError {
        TransportError::CommandTimeout {
            host: self.name.clone(),
            what: what.to_owned(),
            after,
        }
    }

    async fn hold_impl(
        &self,
        cmd: &RemoteCommand,
        ready: &str,
        after: Duration,
    ) -> Result<Holding, TransportError> {
        let what = describe(cmd);
        let wire = self.wire(cmd, &what)?;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let started = async {
            let (mut reader, writer) = self.open(&wire).await?.split();
            if !wire.stdin_prefix().is_empty() {
                // A failed write shows as the command's exit below.
                let _ = writer.data(wire.stdin_prefix()).await;
            }
            let up_to = hold::up_to(&mut reader, wire.via_sudo, ready).await;
            Ok::<_, TransportError>((up_to, reader, writer))
        };
        let (up_to, reader, writer) = tokio::time::timeout(after, started)
            .await
            .map_err(|_| self.timed_out(&what, after))??;
        if !up_to.ready {
            let collected = Collected {
                out: up_to.out,
                status: up_to.status,
                refused: false,
            };
            let out = self.exited(collected)?;
            return self.check_sudo(&what, &wire, out).map(Holding::Exited);
        }
        let out = self.check_sudo(&what, &wire, up_to.out)?;
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hold::Held {
                _reader: reader,
                _writer: writer,
            });
        Ok(Holding::Running(out))
    }

    async fn exec_impl(&self, cmd: &RemoteCommand) -> Result<Output, TransportError> {
        let what = describe(cmd);
        let wire = self.wire(cmd, &what)?;
        let limits = match cmd.timeout_after() {
            Some(after) => Limits {
                node: Some(after),
                local: after + KILL_AFTER + BACKSTOP_SLACK,
            },
            None => Limits {
                node: None,
                local: self.untimed_deadline,
            },
        };
        self.run(&what, &wire, cmd.stdin_bytes(), limits).await
    }

    async fn put_impl(
        &self,
        contents: &[u8],
        path: &str,
        mode: u32,
        sudo: bool,
    ) -> Result<(), TransportError> {
        let expected = upload::sha256_hex(contents);
        let cmd = upload::put_command(path, mode, &expected, contents.len(), sudo);
        let what = format!("upload of {path}");
        let wire = self.wire(&cmd, &what)?;
        let limits = Limits {
            node: None,
            local: upload_deadline(self.upload_timeout, contents.len()),
        };
        let out = self.run(&what, &wire, Some(contents), limits).await?;
        upload::check_put(&self.name, path, &expected, &out)
    }
}

impl Transport for SshTransport {
    fn exec<'a>(&'a self, cmd: &'a RemoteCommand) -> BoxFuture<'a, Result<Output, TransportError>> {
        Box::pin(self.exec_impl(cmd))
    }

    fn put_file<'a>(
        &'a self,
        contents: &'a [u8],
        path: &'a str,
        mode: u32,
        sudo: bool,
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(self.put_impl(contents, path, mode, sudo))
    }

    fn hold<'a>(
        &'a self,
        cmd: &'a RemoteCommand,
        ready: &'a str,
        within: Duration,
    ) -> BoxFuture<'a, Result<Holding, TransportError>> {
        Box::pin(self.hold_impl(cmd, ready, within))
    }

    fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }
}

/// How much longer than the node's own `timeout` the local backstop waits.
const BACKSTOP_SLACK: Duration = Duration::from_secs(5);

/// When one channel is given up on.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// The command's own `timeout`, enforced on the node.
    node: Option<Duration>,
    /// The local deadline: fires when the link stalls, or when nothing on
    /// the node bounds the command.
    local: Duration,
}

impl Limits {
    /// The bound named in a timeout error.
    fn reported(&self) -> Duration {
        self.node.unwrap_or(self.local)
    }
}

/// `base` plus the time `len` bytes take at [`MIN_UPLOAD_RATE`].
fn upload_deadline(base: Duration, len: usize) -> Duration {
    let len = u64::try_from(len).unwrap_or(u64::MAX);
    base + Duration::from_secs(len.div_ceil(MIN_UPLOAD_RATE))
}

/// What a channel left behind when it closed.
struct Collected {
    out: Output,
    status: Option<i32>,
    /// The server answered the exec request with a failure.
    refused: bool,
}

/// Read the channel until it closes.
async fn collect(mut reader: ChannelReadHalf) -> Collected {
    let mut c = Collected {
        out: Output::default(),
        status: None,
        refused: false,
    };
    while let Some(msg) = reader.wait().await {
        match msg {
            ChannelMsg::Data { data } => c.out.stdout.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, ext: 1 } => c.out.stderr.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => {
                c.status = Some(i32::try_from(exit_status).unwrap_or(i32::MAX))
            }
            ChannelMsg::ExitSignal { signal_name, .. } => {
                c.status = Some(-signal_number(&signal_name));
                c.out.signal = Some(signal_name_of(&signal_name));
            }
            ChannelMsg::Failure => c.refused = true,
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    c
}

/// Write `prefix` then `body` then EOF; never completes, so that only the
/// channel closing (or the deadline) ends a run.
async fn send_stdin(writer: &ChannelWriteHalf<client::Msg>, prefix: &[u8], body: Option<&[u8]>) {
    // A write error means the command stopped reading (or the session
    // died); its exit status tells which.
    let mut ok = true;
    if !prefix.is_empty() {
        ok = writer.data(prefix).await.is_ok();
    }
    if ok && let Some(body) = body {
        ok = writer.data(body).await.is_ok();
    }
    if ok {
        let _ = writer.eof().await;
    }
    std::future::pending::<()>().await
}

/// A short name for a command in messages: the program, or "sh script".
fn describe(cmd: &RemoteCommand) -> String {
    if cmd.program() == "sh" && cmd.arguments().first().map(String::as_str) == Some("-c") {
        "sh script".to_owned()
    } else {
        format!("`{}`", cmd.program())
    }
}

fn signal_name_of(sig: &Sig) -> String {
    match sig {
        Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

/// Linux signal numbers for the names SSH reports.
fn signal_number(sig: &Sig) -> i32 {
    match sig {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        Sig::Custom(name) => match name.as_str() {
            "USR2" => 12,
            "BUS" => 7,
            _ => 1,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_deadline_grows_with_size() {
        let base = Duration::from_secs(60);
        assert_eq!(upload_deadline(base, 0), base);
        assert_eq!(upload_deadline(base, 1), base + Duration::from_secs(1));
        let binary = 64 * 1024 * 1024;
        assert_eq!(
            upload_deadline(base, binary),
            base + Duration::from_secs(256)
        );
    }

    #[test]
    fn scripts_are_described_without_their_source() {
        let cmd = RemoteCommand::script("secret-ish source").arg("x");
        assert_eq!(describe(&cmd), "sh script");
        assert_eq!(describe(&RemoteCommand::new("k3s")), "`k3s`");
    }
}
