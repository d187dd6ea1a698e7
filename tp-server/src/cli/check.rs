//! `tp-server check -c FILE`: validate a config and what it names.

use std::io::Write;
use std::path::Path;

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::Config;

/// Loads the config (which loads and checks every file it names) and prints a summary.
pub fn check(config_path: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    writeln!(out, "{}: ok", config_path.display())?;
    writeln!(out, "  listen            {} (TLS over TCP)", config.listen)?;
    match config.workers {
        Some(n) => writeln!(
            out,
            "  workers           {n} (threads for TCP connections, and as many for QUIC)"
        )?,
        None => {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            writeln!(out, "  workers           one per core ({cores} here)")?;
        }
    }
    let q = &config.quic;
    if q.enabled {
        writeln!(
            out,
            "  quic              {} over UDP: {} streams/connection, windows {} KiB/stream {} KiB/connection, idle {:?}, keep-alive {:?}",
            config.listen,
            q.limits.max_streams,
            q.limits.stream_window / 1024,
            q.limits.connection_window / 1024,
            q.limits.idle_timeout,
            q.limits.keep_alive,
        )?;
    } else {
        writeln!(out, "  quic              off")?;
    }
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
    if config.stealth.enabled() {
        writeln!(
            out,
            "  stealth           {}",
            config.stealth.names.join(", ")
        )?;
        if config.quic.enabled {
            writeln!(out, "  warning: {}", crate::stealth::QUIC_WARNING)?;
        }
        for route in &config.passthrough {
            if config.stealth.overlaps(&route.names) {
                writeln!(
                    out,
                    "  warning: the passthrough route to {} shares names with [stealth]: it is tried first, so stealth clients there are passed through",
                    route.backend
                )?;
            }
        }
        for route in &config.terminate {
            // A route on its own listeners only is never on the main port.
            let on_main_port = !(route.names.is_empty() && route.alpn.is_empty());
            let browser_alpn =
                route.alpn.is_empty() || route.alpn.iter().any(|a| a == "h2" || a == "http/1.1");
            if on_main_port && browser_alpn && config.stealth.overlaps(&route.names) {
                writeln!(
                    out,
                    "  warning: the terminate route to {} shares names with [stealth]: it takes precedence, so stealth clients there reach it, not a tunnel",
                    route.backend
                )?;
            }
        }
    }
    if !config.tls.has_client_ca() {
        writeln!(
            out,
            "  warning: no [tls] client_ca: no tunnels can be opened (tp clients are refused{})",
            if config.quic.enabled {
                ", and QUIC is off"
            } else {
                ""
            }
        )?;
    }
    writeln!(out, "  revoked entries   {}", config.tls.revoked.len())?;
    writeln!(
        out,
        "  policy            {} ({} rules)",
        config.policy_path.display(),
        config.policy.rule_count()
    )?;
    for route in &config.terminate {
        writeln!(out, "  terminate         {}", describe(route))?;
    }
    let l = &config.limits;
    writeln!(
        out,
        "  limits            handshake {:?}, hello {:?}, connect {:?}, idle {:?} (udp {:?}), drain {:?}, max {} connections, {} tunnels/identity, {} handshakes/source",
        l.handshake_timeout,
        l.hello_timeout,
        l.connect_timeout,
        l.idle_timeout,
        l.udp_idle_timeout,
        l.drain_timeout,
        l.max_connections,
        l.max_tunnels_per_identity,
        l.max_handshakes_per_source,
    )?;
    Ok(())
}

/// One line for a `[[terminate]]` route: where it is reached, where it goes, who
/// may use it.
fn describe(route: &crate::terminate::Route) -> String {
    let mut on = Vec::new();
    if !route.names.is_empty() {
        on.push(format!("names {}", route.names.join(", ")));
    }
    if !route.alpn.is_empty() {
        on.push(format!("alpn {}", route.alpn.join(", ")));
    }
    for addr in &route.listen {
        on.push(format!("listen {addr}"));
    }
    let who = match (&route.name, route.client_cert) {
        (Some(name), true) => format!(", client certificate required, policy `routes` {name:?}"),
        _ => String::new(),
    };
    let name = route
        .name
        .as_deref()
        .map(|n| format!("{n}: "))
        .unwrap_or_default();
    format!("{name}{} -> {}{who}", on.join("; "), route.backend)
}
