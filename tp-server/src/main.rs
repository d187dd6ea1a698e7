//! `tp-server`: parse the command line, start logging, hand off to the library.

use std::process::ExitCode;

use clap::Parser;
use tp_server::cli::{Cli, Command, PolicyCommand, logging, policy_check, signal_check};

/// jemalloc rather than the C library's malloc: it aligns the buffers rustls copies
/// each TLS record's plaintext between to 64 bytes (glibc's to 16), which keeps
/// those copies off the distances where `rep movsb` is slow on AMD Zen 3 and 4
/// (docs/deploy.md, "Memory allocator").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(cli.log_format, &config),
        Command::Quickstart(args) => with_runtime(
            cli.log_format,
            "info",
            tp_server::cli::quickstart::quickstart(args),
        ),
        Command::Check { config } => tp_server::cli::check::check(&config, &mut std::io::stdout()),
        Command::Policy {
            command: PolicyCommand::Check(args),
        } => match policy_check::check(&args, &mut std::io::stdout()) {
            Ok(policy_check::Verdict::Allowed) => Ok(()),
            Ok(policy_check::Verdict::Denied) => return ExitCode::from(3),
            Err(e) => Err(e),
        },
        Command::Ca { command } => command.run(),
        Command::SignalLink { domain } => {
            tp_server::cli::signal_link::link(&domain).map(|link| println!("{link}"))
        }
        Command::SignalCheck(args) => {
            let mut stdout = std::io::stdout();
            let check = signal_check::check(&args, &mut stdout);
            match with_runtime(cli.log_format, "warn", check) {
                Ok(verdict) => return ExitCode::from(verdict.exit_code()),
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tp-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `tp-server run`: the config first, since its `workers` also sets the threads of the
/// runtime that runs the accept loops and QUIC (docs/config.md).
fn run(format: logging::LogFormat, path: &std::path::Path) -> anyhow::Result<()> {
    logging::init(format, "info");
    let config = tp_server::Config::load(path)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = config.workers {
        runtime.worker_threads(workers.get());
    }
    runtime
        .thread_name("tp-main")
        .enable_all()
        .build()?
        .block_on(tp_server::cli::run::run(config, path))
}

fn with_runtime<T>(
    format: logging::LogFormat,
    default_level: &str,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    logging::init(format, default_level);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}
