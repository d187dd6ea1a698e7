//! The `tp` binary: parse the command line, start logging, load settings, run
//! the command, exit with its status. Everything else lives in the `tp_client`
//! library.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;
use tokio::runtime::Runtime;
use tp_client::addr::Target;
use tp_client::cli::{self, Cli, Command};
use tp_client::e2e::AllowList;
use tp_client::expose::{self, ExposeOptions, Mode};
use tp_client::{Connector, config, exit, stdio, up};
use tracing_subscriber::EnvFilter;

/// jemalloc rather than the C library's malloc: it aligns the buffers rustls copies
/// each TLS record's plaintext between to 64 bytes (glibc's to 16), which keeps
/// those copies off the distances where `rep movsb` is slow on AMD Zen 3 and 4
/// (docs/deploy.md, "Memory allocator").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Environment variable with a tracing filter that overrides `-v`.
const ENV_LOG: &str = "TP_LOG";

fn main() {
    let cli = match cli::parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        // Help and version exit 0, usage errors exit 2.
        Err(e) => e.exit(),
    };
    init_logging(cli.global.verbose);
    let status = run(cli);
    // Exiting here, rather than returning, ends tokio's blocking stdin read too.
    std::process::exit(i32::from(status));
}

fn run(cli: Cli) -> u8 {
    let env = |name: &str| std::env::var(name).ok();
    let home = config::home_dir(&env);
    let flags = cli.global.layer(home.as_deref());
    let settings = match config::load(flags, cli.global.config.as_deref(), &env) {
        Ok(settings) => settings,
        Err(e) => return fail(&e, exit::LOCAL),
    };
    // Certificates, key and CA are loaded once, before anything is bound or dialed.
    let connector = match Connector::from_settings(&settings) {
        Ok(connector) => connector,
        Err(e) => return fail(&e, exit::LOCAL),
    };
    let runtime = match build_runtime(&cli.command) {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("{e:#}"), exit::LOCAL),
    };
    // A panic unwinding out of `block_on` would drop the runtime, which waits
    // for its blocking tasks: one may be parked in a read of stdin, and tp
    // would hang with ssh waiting on it. Caught, the runtime is let go below,
    // and the status is Rust's for a panic (the default hook has printed it).
    let command =
        std::panic::AssertUnwindSafe(|| runtime.block_on(command(cli, connector, &settings)));
    let status = std::panic::catch_unwind(command).unwrap_or(101);
    // Do not wait for blocking tasks: one may be parked in a read of stdin.
    runtime.shutdown_background();
    status
}

/// Runs the command; returns the exit status.
async fn command(cli: Cli, connector: Connector, settings: &config::Settings) -> u8 {
    match cli.command {
        Command::Connect { dest, port } => {
            match stdio::run(&connector, &Target { dest, port }).await {
                Ok(_) => exit::OK,
                Err(e) => fail(&e, e.exit_status()),
            }
        }
        Command::Up {
            target,
            local_port,
            bind,
            udp,
            udp_idle,
        } => {
            let connector = Arc::new(connector);
            let stop = up::shutdown_signal();
            let served = if udp {
                let options = up::udp::UdpOptions {
                    idle: udp_idle,
                    ..up::udp::UdpOptions::default()
                };
                up::udp::run(connector, target, bind, local_port, options, stop).await
            } else {
                up::run(connector, target, bind, local_port, stop).await
            };
            match served {
                Ok(()) => exit::OK,
                Err(e) => fail(&e, exit::LOCAL),
            }
        }
        Command::Expose {
            local_port,
            name,
            public,
            allow,
            proxy_protocol,
            local_host,
        } => {
            let mode = match (name, public) {
                (Some(name), _) => Mode::Service {
                    name,
                    allow: AllowList::new(allow),
                },
                (None, Some(port)) => Mode::Public {
                    port,
                    proxy_protocol,
                },
                // clap requires one of --name and --public.
                (None, None) => return fail(&"give --name or --public", exit::USAGE),
            };
            let options = ExposeOptions {
                local_host,
                local_port,
                mode,
                heartbeat: expose::Heartbeat::default(),
            };
            let renew = || Connector::from_settings(settings);
            match expose::run(connector, renew, options, up::shutdown_signal()).await {
                Ok(()) => exit::OK,
                Err(e) => fail(&e, e.exit_status()),
            }
        }
    }
}

fn build_runtime(command: &Command) -> anyhow::Result<Runtime> {
    let mut builder = match command {
        Command::Connect { .. } => tokio::runtime::Builder::new_current_thread(),
        Command::Up { .. } | Command::Expose { .. } => tokio::runtime::Builder::new_multi_thread(),
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Prints `tp: ERROR` on stderr and returns `status`.
fn fail(error: &dyn std::fmt::Display, status: u8) -> u8 {
    eprintln!("tp: {error}");
    status
}

/// Logs go to stderr only: stdout is the tunnel.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = match std::env::var(ENV_LOG) {
        Ok(spec) if !spec.is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!("tp: ignoring {ENV_LOG}={spec:?}: {e}");
            EnvFilter::new(default)
        }),
        _ => EnvFilter::new(default),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose >= 2)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
