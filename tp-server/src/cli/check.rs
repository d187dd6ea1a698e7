//! `tp-server check -c FILE`: validate a config and what it names.

use std::io::Write;
use std::path::Path;

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::Config;

/// Loads the config (which loads and checks every file it names) and prints a summary.
pub fn check(config_path: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    writeln!(out, "{}: ok", config_path.display())?;
    writeln!(out, "  listen            {}", config.listen)?;
    if let Some(leaf) = config.tls.cert_chain.first()
        && let Ok((_, cert)) = X509Certificate::from_der(leaf)
    {
        let not_after = cert.validity().not_after;
        writeln!(
            out,
            "  server cert       {} (expires {not_after})",
            cert.subject()
        )?;
        if cert.validity().time_to_expiration().is_none() {
            writeln!(out, "  warning: the server certificate has expired")?;
        }
    }
    writeln!(out, "  client CAs        {}", config.tls.client_ca.len())?;
    writeln!(out, "  revoked entries   {}", config.tls.revoked.len())?;
    writeln!(
        out,
        "  policy            {} ({} rules)",
        config.policy_path.display(),
        config.policy.rule_count()
    )?;
    let l = &config.limits;
    writeln!(
        out,
        "  limits            handshake {:?}, hello {:?}, connect {:?}, idle {:?}, drain {:?}, max {} connections",
        l.handshake_timeout,
        l.hello_timeout,
        l.connect_timeout,
        l.idle_timeout,
        l.drain_timeout,
        l.max_connections
    )?;
    Ok(())
}
