//! The `tp-server` command line. Each subcommand has its own file.

pub mod ca;
pub mod check;
pub mod logging;
pub mod policy_check;
pub mod quickstart;
pub mod run;
pub mod signal_check;
pub mod signal_link;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// tp-server: the zero-trust, identity-aware tunnel server.
///
/// Clients with a valid client certificate open tunnels (`tp HOST PORT`) to the
/// places the policy allows. Start with `tp-server quickstart`.
#[derive(Debug, Parser)]
#[command(name = "tp-server", version, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "human",
        env = "TP_LOG_FORMAT"
    )]
    pub log_format: logging::LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server with a config file: TLS over TCP and QUIC over UDP on the
    /// `listen` port (without [tls] client_ca no tunnels open, and QUIC is off),
    /// and TLS over TCP on the `listen` ports of [[terminate]] routes.
    /// SIGHUP reloads the config for new connections; SIGTERM/SIGINT
    /// drain (stop accepting, let tunnels finish up to limits.drain_timeout); a
    /// second signal exits at once.
    Run {
        /// The server config file.
        #[arg(
            short,
            long,
            value_name = "FILE",
            default_value = "/etc/tp/server.toml"
        )]
        config: PathBuf,
    },
    /// Validate a config file and everything it names (certificates, keys, CAs,
    /// revocation list, policy) and print a summary. Exit 1 with file:line:column on error.
    Check {
        /// The server config file.
        #[arg(
            short,
            long,
            value_name = "FILE",
            default_value = "/etc/tp/server.toml"
        )]
        config: PathBuf,
    },
    /// Inspect the policy.
    Policy {
        /// What to inspect.
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The development certificate authority (see docs/pki.md).
    Ca {
        /// What to do with it.
        #[command(subcommand)]
        command: ca::CaCommand,
    },
    /// Make a dev CA, certificates, a policy and a client config in a local folder
    /// (reused on later runs), listen on 127.0.0.1 and print what to type next.
    Quickstart(quickstart::QuickstartArgs),
    /// Print the Signal proxy link for DOMAIN (with `[signal] enabled = true`,
    /// Signal users open it to use this server as their proxy).
    SignalLink {
        /// The DNS name this server answers on port 443.
        domain: String,
    },
    /// Check that a running server's Signal relay works, as Signal's apps use it.
    ///
    /// For each Signal host (all of the built-in allowlist, or each `--host`): TLS
    /// to DOMAIN:443 with the server's certificate verified, then a second TLS
    /// handshake with the Signal host inside it, through the relay. Prints one line
    /// per host (who answered and how fast, or why nothing did), then a summary.
    SignalCheck(signal_check::SignalCheckArgs),
}

/// `tp-server policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Explain the decision for a certificate's identity and a target (or a
    /// service, a public port, a [[terminate]] route). Exit status: 0 allowed,
    /// 3 denied, 1 error.
    Check(policy_check::PolicyCheckArgs),
}
