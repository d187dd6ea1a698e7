//! The command line: `tp HOST PORT`, `tp connect HOST PORT`, `tp up [--udp]
//! HOST:PORT LOCALPORT`, `tp expose LOCALPORT (--name NAME | --public PORT)`,
//! and the multicall name `tp-up` (= `tp up`).

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, ArgGroup, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use tp_proto::Host;

use crate::addr::{
    Dest, ServerAddr, ServiceName, Target, parse_host, parse_local_port, parse_port,
};
use crate::config::{Layer, expand_tilde};
use crate::connect::{HEAD_START, QUIC_RETRY_AFTER};
use crate::e2e::AllowPattern;
use crate::exit;
use crate::transport::Transport;
use crate::up::udp;
use tp_net::duration::parse_timeout;

/// The name that makes the binary behave as `tp up`.
pub const UP_NAME: &str = "tp-up";

/// Options every command takes.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Config file [default: $XDG_CONFIG_HOME/tp/config.toml or ~/.config/tp/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The tp server (port defaults to 443)
    #[arg(long, global = true, value_name = "HOST:PORT", value_parser = ServerAddr::parse)]
    pub server: Option<ServerAddr>,
    /// Name the server's certificate must match [default: the server's host]
    #[arg(long, global = true, value_name = "NAME")]
    pub server_name: Option<String>,
    /// Client certificate chain, PEM, leaf first
    #[arg(long, global = true, value_name = "PATH")]
    pub cert: Option<PathBuf>,
    /// Client private key, PEM
    #[arg(long, global = true, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// CA certificate(s) that issued the server's certificate, PEM
    #[arg(long, global = true, value_name = "PATH")]
    pub ca: Option<PathBuf>,
    /// CA certificate(s) other clients' certificates must chain to, for end-to-end TLS with a service, PEM [default: --ca]
    #[arg(long, global = true, value_name = "PATH")]
    pub peer_ca: Option<PathBuf>,
    /// Deadline for reaching the server and the TLS or QUIC handshake [default: 10s]
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_timeout)]
    pub connect_timeout: Option<Duration>,
    /// auto (QUIC, falling back to TLS/TCP when UDP gets no answer), quic, or tcp (TLS over TCP) [default: auto]
    #[arg(long, global = true, value_name = "auto|quic|tcp", value_parser = Transport::parse)]
    pub transport: Option<Transport>,
    /// Look like a browser visiting the server's website: offer its ALPN ids instead of tp/1, over TLS/TCP only; the server must have stealth mode on for its name (docs/stealth.md)
    #[arg(long, global = true)]
    pub stealth: bool,
    /// More logging on stderr: -v info, -vv debug, -vvv trace
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
}

impl GlobalArgs {
    /// The settings the flags give, with `~/` expanded against `home`.
    pub fn layer(&self, home: Option<&Path>) -> Layer {
        let path = |p: &Option<PathBuf>| p.as_deref().map(|p| expand_tilde(p, home));
        Layer {
            server: self.server.clone(),
            server_name: self.server_name.clone(),
            cert: path(&self.cert),
            key: path(&self.key),
            ca: path(&self.ca),
            peer_ca: path(&self.peer_ca),
            connect_timeout: self.connect_timeout,
            transport: self.transport,
            stealth: self.stealth.then_some(true),
        }
    }
}

/// The raw command line, before the default command is filled in.
#[derive(Debug, Parser)]
#[command(
    name = "tp",
    version,
    about = "Tunnels through a tp server, authenticated by your client certificate.",
    subcommand_negates_reqs = true,
    disable_help_subcommand = true,
    after_help = "Run `tp --help` for the config file, environment variables and exit statuses."
)]
struct RawCli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Option<Command>,
    /// Target host (for ssh: %h): a name, IPv4, or IPv6 with or without brackets; a single label (alice-laptop) is a service, a single-label host takes a trailing dot (db1.)
    #[arg(value_name = "HOST", required = true, value_parser = Dest::parse)]
    host: Option<Dest>,
    /// Target port (for ssh: %p)
    #[arg(value_name = "PORT", required = true, value_parser = parse_port)]
    port: Option<u16>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Bridge stdin/stdout to a tunnel to HOST:PORT (same as `tp HOST PORT`; for ssh's ProxyCommand)
    Connect {
        /// Target host: a name, IPv4, or IPv6 with or without brackets; a single label is a service (db1. is a host)
        #[arg(value_name = "HOST", value_parser = Dest::parse)]
        dest: Dest,
        /// Target port
        #[arg(value_name = "PORT", value_parser = parse_port)]
        port: u16,
    },
    /// Forward a local TCP port (or with --udp a UDP port) to HOST:PORT, one tunnel per connection or UDP source (also `tp-up`)
    Up {
        /// Target host and port.
        #[arg(
            value_name = "HOST:PORT",
            value_parser = Target::parse,
            help = "Target, e.g. db1.internal:5432 or [2001:db8::5]:22"
        )]
        target: Target,
        /// Local port to listen on; 0 picks a free one (printed on stderr)
        #[arg(value_name = "LOCALPORT", value_parser = parse_local_port)]
        local_port: u16,
        /// Local address to listen on
        #[arg(long, value_name = "ADDR", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST), display_order = 0)]
        bind: IpAddr,
        /// Forward UDP: each local source address gets its own UDP tunnel (a flow)
        #[arg(long, display_order = 0)]
        udp: bool,
        /// With --udp: close a flow after this long without a datagram either way
        #[arg(
            long,
            value_name = "DURATION",
            default_value = "2m",
            value_parser = parse_timeout,
            requires = "udp",
            display_order = 0
        )]
        udp_idle: Duration,
    },
    /// Expose a local TCP port through the server: as a service other tp users reach end to end (--name), or on a public port of the server (--public)
    #[command(group(ArgGroup::new("mode").required(true).args(["name", "public"])))]
    Expose {
        /// Local port to forward incoming connections to
        #[arg(value_name = "LOCALPORT", value_parser = parse_port)]
        local_port: u16,
        /// Register this service name (1-63 of a-z 0-9 _ -); callers run TLS with you inside the tunnel
        #[arg(long, value_name = "NAME", value_parser = ServiceName::parse, display_order = 0)]
        name: Option<ServiceName>,
        /// Have the server listen on this public TCP port and forward plain connections
        #[arg(long, value_name = "PORT", value_parser = parse_port, display_order = 0)]
        public: Option<u16>,
        /// With --name: accept only callers whose verified identity matches: an identity, a glob with *, or group:NAME (repeatable)
        #[arg(
            long,
            value_name = "PATTERN",
            value_parser = AllowPattern::parse,
            conflicts_with = "public",
            display_order = 0
        )]
        allow: Vec<AllowPattern>,
        /// With --public: write a PROXY protocol v2 header (the caller's address) to the local service first
        #[arg(long, conflicts_with = "name", display_order = 0)]
        proxy_protocol: bool,
        /// The local host to forward to
        #[arg(
            long,
            value_name = "HOST",
            default_value = "127.0.0.1",
            value_parser = parse_host,
            display_order = 0
        )]
        local_host: Host,
    },
}

/// A parsed command line.
#[derive(Debug, Clone)]
pub struct Cli {
    /// Options every command takes.
    pub global: GlobalArgs,
    /// The command, with `tp HOST PORT` turned into [`Command::Connect`].
    pub command: Command,
}

/// The clap command, with the long help's trailer (config, environment, exit
/// statuses) filled in.
pub fn command() -> clap::Command {
    RawCli::command().after_long_help(long_help_trailer())
}

/// Parses the command line (program name first). Called as `tp-up`, the
/// arguments are those of `tp up`.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args = multicall_args(args.into_iter().map(Into::into).collect());
    let mut cmd = command();
    let matches = cmd.try_get_matches_from_mut(args)?;
    let raw = RawCli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    let command = match (raw.command, raw.host, raw.port) {
        (
            Some(Command::Up {
                target, udp: true, ..
            }),
            _,
            _,
        ) if target.dest.service().is_some() => {
            return Err(cmd.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "{} is a service, and services carry TCP only; a single-label host is written with a trailing dot (db1.)",
                    target.dest
                ),
            ));
        }
        (Some(command), _, _) => command,
        (None, Some(dest), Some(port)) => Command::Connect { dest, port },
        // clap enforces HOST and PORT when there is no subcommand.
        (None, _, _) => {
            return Err(cmd.error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "HOST and PORT are required",
            ));
        }
    };
    Ok(Cli {
        global: raw.global,
        command,
    })
}

/// `tp-up ARGS` becomes `tp up ARGS`; anything else is left alone.
fn multicall_args(mut args: Vec<OsString>) -> Vec<OsString> {
    let invoked_as_up = args
        .first()
        .and_then(|argv0| Path::new(argv0).file_stem())
        .is_some_and(|stem| stem == UP_NAME);
    if invoked_as_up {
        // `first()` was Some, so index 0 exists.
        args[0] = "tp".into();
        args.insert(1, "up".into());
    }
    args
}

fn long_help_trailer() -> String {
    format!(
        "\
Examples:
  ssh -o ProxyCommand=\"tp %h %p\" db1.internal
  tp up db1.internal:5432 15432          (or: tp-up db1.internal:5432 15432)
  tp up --udp dns1.internal:53 5353      (each local UDP source gets its own flow)
  tp expose 22 --name alice-laptop       (others reach it: ssh -o ProxyCommand=\"tp %h %p\" alice-laptop)
  tp expose 22 --name alice-laptop --allow bob@corp --allow group:ops
  tp expose 8080 --public 2222 --proxy-protocol

Settings, later sources overriding earlier ones:
  1. the config file: --config PATH, else TP_CONFIG, else
     $XDG_CONFIG_HOME/tp/config.toml, else ~/.config/tp/config.toml
     (a missing default file is fine; a named one must exist)
  2. environment: TP_SERVER, TP_SERVER_NAME, TP_CERT, TP_KEY, TP_CA,
     TP_PEER_CA, TP_CONNECT_TIMEOUT, TP_TRANSPORT, TP_STEALTH (1 or 0)
     (empty counts as unset)
  3. the flags above
  server, cert, key and ca are required; peer_ca defaults to ca.

Config file (TOML; relative paths are relative to the file, ~/ is $HOME):
  server = \"tp.example.org:443\"
  cert = \"alice.pem\"
  key = \"alice.key\"
  ca = \"ca.pem\"
  # server_name = \"tp.example.org\"
  # peer_ca = \"ca.pem\"             # CA of other clients, for services
  # connect_timeout = \"10s\"
  # transport = \"auto\"             # or \"quic\", \"tcp\"
  # stealth = true                 # look like a browser (TLS/TCP only)

Transports: QUIC on UDP to the server's port (one connection carries every
tunnel of `tp up`), or TLS over TCP (one connection per tunnel). `auto` starts
QUIC and, if it has not connected within {head_start:?}, TLS/TCP too; the first to
connect wins. When QUIC did not answer, `auto` skips it for {retry} minutes, noted in
$XDG_CACHE_HOME/tp/transport (else ~/.cache/tp/transport); delete that file to
retry QUIC at once.

Stealth (--stealth): the TLS handshake offers a browser's ALPN ids (h2,
http/1.1) instead of tp/1, over TLS/TCP only, so nothing in the clear tells the
tunnel from a visit to the server's website. The server must have stealth mode
on for the server name, and its certificate there is the website's: point `ca`
at the CA that issued it (for a public one, /etc/ssl/certs/ca-certificates.crt).
See docs/stealth.md for what an observer can still tell.

UDP (`tp up --udp`): each local source address gets its own UDP tunnel (a
flow), opened by its first datagram. Over QUIC, small datagrams travel as QUIC
datagrams, larger ones on the flow's stream. At most {max_flows} flows (each is
a tunnel: the server limits an identity's tunnels too, and answers `busy`
beyond); a flow without a datagram either way for --udp-idle (default 2m) is
closed. A refused
flow is logged once per source, and its datagrams are dropped for {retry_udp}s.

Services: a target that is a single label (alice-laptop: no dot, not an
address, not localhost) is a service another client exposes with
`tp expose --name`; write a single-label host with a trailing dot (db1.).
Inside the tunnel, TLS 1.3 runs end to end with the exposing client: both
certificates are verified against peer_ca, and -v prints the exposing side's
identity. `tp expose` registers again (250 ms doubling to 10 s) whenever its
control channel dies; `conflict` and `denied` end it.

Logging goes to stderr (stdout carries only tunnel bytes): warnings by default,
-v info, -vv debug; TP_LOG (e.g. TP_LOG=debug) overrides.

Exit status (a refused tunnel prints one line, `tp: CODE: MESSAGE`, on stderr):
{}",
        exit::help_table(),
        head_start = HEAD_START,
        retry = QUIC_RETRY_AFTER.as_secs() / 60,
        max_flows = udp::MAX_FLOWS,
        retry_udp = udp::RETRY_AFTER.as_secs(),
    )
}

#[cfg(test)]
mod tests;
