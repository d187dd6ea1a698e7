//! `tp-server quickstart`: a working server on 127.0.0.1 in one command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;

use crate::quickstart::{self, DEV_IDENTITY};
use crate::{Config, Listeners};

/// Arguments of `tp-server quickstart`.
#[derive(Debug, clap::Args)]
pub struct QuickstartArgs {
    /// The state folder (CA, certificates, policy, configs); reused on later runs.
    #[arg(long, value_name = "DIR", default_value = ".tp-quickstart")]
    pub dir: PathBuf,
    /// Where to listen. If the default is taken, a free port is used instead.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

/// Prepares the folder, binds, prints the next steps and serves until a signal.
pub async fn quickstart(args: QuickstartArgs) -> anyhow::Result<()> {
    let default: SocketAddr = DEFAULT_LISTEN.parse().context("default address")?;
    let wanted = args.listen.unwrap_or(default);
    // TLS/TCP and QUIC (UDP) on the same port.
    let listeners = match Listeners::bind(wanted, true).await {
        Ok(l) => l,
        Err(e) if args.listen.is_none() && e.kind() == std::io::ErrorKind::AddrInUse => {
            eprintln!("tp quickstart: {wanted} is in use; using a free port instead");
            Listeners::bind(SocketAddr::new(wanted.ip(), 0), true).await?
        }
        Err(e) => return Err(e).with_context(|| format!("cannot listen on {wanted}")),
    };
    let addr = listeners.local_addr()?;
    let files = quickstart::prepare(&args.dir, addr, SystemTime::now())?;
    quickstart::write_client_config(&files, addr)?;
    let config = Config::load(&files.server_config)?;

    let tp = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("tp")))
        .filter(|tp| tp.exists())
        .map_or_else(|| "tp".to_owned(), |tp| tp.display().to_string());
    let tp_cmd = format!("{tp} --config {}", files.client_config.display());
    // This very binary, so the line works without tp-server on PATH.
    let tp_server = std::env::current_exe()
        .map_or_else(|_| "tp-server".to_owned(), |exe| exe.display().to_string());
    println!(
        "\ntp quickstart: dev CA, certificates, policy and configs in {dir}\n\
         tp-server listening on {addr} (TLS over TCP and QUIC over UDP); the dev identity is {DEV_IDENTITY}.\n\
         \n\
         In another terminal:\n\
         \n  # ssh to this machine through tp (needs a local sshd):\n\
         \x20 ssh -o ProxyCommand=\"{tp_cmd} %h %p\" 127.0.0.1\n\
         \n  # forward local port 2222 to 127.0.0.1:22, one tunnel per connection:\n\
         \x20 {tp_cmd} up 127.0.0.1:22 2222\n\
         \n  # expose this machine's sshd as the service dev-laptop, then reach it by name:\n\
         \x20 {tp_cmd} expose 22 --name dev-laptop\n\
         \x20 ssh -o ProxyCommand=\"{tp_cmd} %h %p\" dev-laptop\n\
         \n  # what the policy says, and why:\n\
         \x20 {tp_server} policy check -c {server} --cert {cert} --connect 127.0.0.1:22\n\
         \n  # speak the protocol by hand:\n\
         \x20 openssl s_client -quiet -alpn tp/1 -CAfile {ca} -cert {cert} -key {key} -connect {addr}\n\
         \x20 {{\"v\":1,\"op\":\"connect\",\"host\":\"127.0.0.1\",\"port\":22}}\n\
         \nPolicy: {policy} (loopback, and services by name). Ctrl-C stops the server.\n",
        dir = files.dir.display(),
        server = files.server_config.display(),
        cert = files.client_cert.display(),
        key = files.dir.join("dev.key").display(),
        ca = files.ca_cert.display(),
        policy = files.policy.display(),
    );
    if tp == "tp" {
        println!(
            "(The tp client was not found next to tp-server; build it with `cargo build --release`.)\n"
        );
    }
    super::run::serve_until_signal(config, &files.server_config, listeners).await
}
