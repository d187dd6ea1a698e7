//! `tp-bench`: the benchmark harness behind `bench/run.sh`.
//!
//! It starts tp and each peer (stunnel, haproxy, nginx stream, socat) on loopback
//! with the same job (plain TCP in, mutual TLS 1.3 across, plain TCP out to our own
//! target), drives every system with the same load generator, and writes a table of
//! medians and ratios to `docs/benchmarks.md`. Scenario (g) is another job: tp-server's
//! Signal relay against nginx as Signal's TLS proxy, TLS-in-TLS clients through each
//! to a stand-in Signal host. It is a tool, not a test: nothing in the test suite runs
//! it.
//!
//! `tp-bench target`, `tp-bench relay` and `tp-bench signal-host` are the helper
//! processes the harness starts (the echo/sink target, one hop of the plain TCP
//! relay reference, and the stand-in Signal host of scenario (g)). `tp-bench
//! record-copy` measures rustls alone, in memory, connection by connection.

mod certs;
mod children;
mod crypto;
mod link;
mod machine;
mod ports;
mod probe;
mod record_copy;
mod report;
mod results;
mod run;
mod scenarios;
mod settings;
mod signal_host;
mod systems;
mod target;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Benchmark harness for tp (see docs/benchmarks.md).
#[derive(Debug, Parser)]
#[command(name = "tp-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the benchmark and write the report.
    Run(Box<settings::RunArgs>),
    /// Write the report again from a saved run (after editing bench/analysis.md).
    Report {
        /// The run record `tp-bench run` saved beside its report.
        #[arg(long, default_value = "docs/benchmarks.json")]
        from: PathBuf,
        /// Hand-written analysis included verbatim, if the file exists.
        #[arg(long, default_value = "bench/analysis.md")]
        analysis: PathBuf,
        /// Markdown report to write; the run record goes beside it as .json.
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: PathBuf,
    },
    /// rustls alone, in memory: MB/s of each of many connections, to see whether
    /// where buffers lie makes some slow (bench/analysis.md).
    RecordCopy(record_copy::Args),
    /// Helper process: the echo/sink target every system forwards to.
    Target {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Helper process: one hop of the plain TCP relay (no TLS).
    Relay {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Address to forward each connection to.
        #[arg(long)]
        to: SocketAddr,
    },
    /// Helper process: the stand-in Signal host (TLS, then the target protocol).
    SignalHost {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Its certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Its key (PEM).
        #[arg(long)]
        key: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run(args) => runtime.block_on(run::main(*args)),
        Command::Report {
            from,
            analysis,
            out,
        } => report::save::report_only(&from, &analysis, &out),
        Command::RecordCopy(args) => record_copy::main(&args),
        Command::Target { listen } => runtime.block_on(target::serve_target(listen)),
        Command::Relay { listen, to } => runtime.block_on(target::serve_relay(listen, to)),
        Command::SignalHost { listen, cert, key } => {
            runtime.block_on(signal_host::serve(listen, &cert, &key))
        }
    }
}
