//! `tp-server signal-check DOMAIN`: does the Signal relay of a running server
//! work? For each Signal host (the built-in list, or `--host`), it connects to
//! DOMAIN:443 as Signal's apps do (outer TLS with SNI DOMAIN and ALPN
//! http/1.1, the certificate verified), starts a second TLS handshake inside
//! with the host's name, and reports who answered, or why nobody did. The hosts
//! are checked side by side, each within `--timeout`.
//!
//! It reads no server config: it sees the server from outside, as a Signal app
//! would.

mod probe;
mod report;
mod verify;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::website::signal::{BUILT_IN_HOSTS, parse_hosts};
use probe::{Failure, Setup};
use report::Names;

/// Arguments of `tp-server signal-check`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 every host answered through the relay; 3 the server \
    was reached but the relay failed for a host; 4 the server itself was not reached for a host \
    (DNS, TCP or its TLS handshake); 1 error (such as an unreadable --outer-ca file), 2 usage."
)]
pub struct SignalCheckArgs {
    /// The name this server answers Signal users on: the DOMAIN of
    /// https://signal.tube/#DOMAIN (the whole link works too).
    pub domain: String,
    /// Connect here instead of DOMAIN:443 (HOST:PORT, IPv6 in brackets). DOMAIN
    /// stays the outer server name, and the name the server's certificate must have.
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Option<String>,
    /// Check this Signal host (repeatable). Default: every host of the built-in
    /// allowlist, the names Signal's apps ask for.
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
    /// Verify the server's certificate against the CAs in this PEM file instead
    /// of the system's (those of SSL_CERT_FILE / SSL_CERT_DIR when set, else the
    /// distribution's bundle).
    #[arg(long, value_name = "PEM")]
    pub outer_ca: Option<PathBuf>,
    /// Verify the Signal hosts' certificates against the CAs in this PEM file.
    /// Without it, Signal's own CA is not known here: a certificate passes on its
    /// name, dates and handshake signature, and its chain is reported as not verified.
    #[arg(long, value_name = "PEM")]
    pub inner_ca: Option<PathBuf>,
    /// The longest one host's check may take ("15s", "1m").
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub timeout: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    tp_net::duration::parse_timeout(text).map_err(|e| e.to_string())
}

/// The outcome, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every host answered through the relay.
    Works,
    /// The server was reached, but the relay failed for at least one host.
    RelayFailed,
    /// The server itself was not reached (DNS, TCP or its TLS handshake) for at
    /// least one host.
    Unreachable,
}

impl Verdict {
    /// The process exit status: 0, 3 or 4.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Works => 0,
            Verdict::RelayFailed => 3,
            Verdict::Unreachable => 4,
        }
    }
}

/// Runs the check and writes the report to `out`.
pub async fn check(args: &SignalCheckArgs, out: &mut dyn Write) -> anyhow::Result<Verdict> {
    let domain = proxy_name(&args.domain)?;
    let hosts = signal_hosts(&args.hosts)?;
    let mut system: Option<Vec<CertificateDer<'static>>> = None;
    let mut system_roots = || system.get_or_insert_with(system_certs).clone();
    let (outer_roots, outer_from) = match &args.outer_ca {
        Some(path) => (
            roots(load_ca(path)?)?,
            format!("the CAs in {}", path.display()),
        ),
        None => {
            let certs = system_roots();
            if certs.is_empty() {
                bail!(
                    "no CA certificates found on this system to verify {domain_text}'s certificate: \
                     install ca-certificates, set SSL_CERT_FILE, or pass --outer-ca FILE",
                    domain_text = domain.to_str()
                );
            }
            (roots(certs)?, "the system's CAs".to_owned())
        }
    };
    let (inner_roots, inner_name_only) = match &args.inner_ca {
        Some(path) => (roots(load_ca(path)?)?, false),
        None => (roots(system_roots())?, true),
    };

    let domain_text = domain.to_str().into_owned();
    let target = match &args.connect {
        Some(at) => connect_target(at)?,
        None if domain_text.contains(':') => format!("[{domain_text}]:443"),
        None => format!("{domain_text}:443"),
    };
    writeln!(
        out,
        "Checking the Signal relay on {domain_text} ({target}): {} host{}, up to {} each; \
         its certificate is checked against {outer_from}.",
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" },
        report::duration(args.timeout),
    )?;

    let addrs = match resolve(&target, args.timeout).await {
        Ok(addrs) => addrs,
        Err(reason) => {
            writeln!(out, "  FAIL  DNS: {reason}")?;
            writeln!(
                out,
                "Signal relay on {domain_text}: not checked, the server was not found."
            )?;
            return Ok(Verdict::Unreachable);
        }
    };
    let at = addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let setup = Arc::new(Setup {
        domain,
        addrs,
        outer: Arc::new(outer_config(outer_roots)),
        inner_roots: Arc::new(inner_roots),
        inner_name_only,
        timeout: args.timeout,
    });
    // Side by side, so a dead server costs one timeout, not one per host.
    let checks: Vec<_> = hosts
        .iter()
        .map(|host| tokio::spawn(probe::probe(setup.clone(), host.clone())))
        .collect();
    let names = Names {
        domain: &domain_text,
        at: &at,
        timeout: args.timeout,
    };
    let host_names: Vec<String> = hosts.iter().map(|h| h.to_str().into_owned()).collect();
    let width = host_names.iter().map(String::len).max().unwrap_or(0);
    let mut results = Vec::with_capacity(hosts.len());
    for (host, check) in host_names.iter().zip(checks) {
        let result = check.await.context("a host's check failed")?;
        writeln!(out, "{}", report::host_line(host, width, &result, &names))?;
        results.push(result);
    }
    write!(
        out,
        "{}",
        report::summary(&domain_text, &host_names, &results)
    )?;
    Ok(verdict(&results))
}

/// The exit verdict of the checks' results.
fn verdict(results: &[Result<probe::Answer, Failure>]) -> Verdict {
    let failures = || results.iter().filter_map(|r| r.as_ref().err());
    if failures().any(Failure::proxy_unreachable) {
        Verdict::Unreachable
    } else if failures().next().is_some() {
        Verdict::RelayFailed
    } else {
        Verdict::Works
    }
}

/// The proxy's name from DOMAIN, or from a pasted link `https://signal.tube/#DOMAIN`.
fn proxy_name(text: &str) -> anyhow::Result<ServerName<'static>> {
    let text = text.trim();
    let name = text
        .split_once("signal.tube/#")
        .map_or(text, |(_, name)| name)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    ServerName::try_from(name.clone()).map_err(|_| {
        anyhow::anyhow!("{name:?} is not a DNS name or an IP address (e.g. proxy.example.org)")
    })
}

/// `--connect HOST:PORT`, checked for its port (the host is resolved later).
fn connect_target(text: &str) -> anyhow::Result<String> {
    let port = text
        .rsplit_once(':')
        .map(|(host, port)| (host, port.parse::<u16>()));
    match port {
        Some((host, Ok(port))) if !host.is_empty() && port != 0 => Ok(text.to_owned()),
        _ => bail!("--connect {text:?} is not HOST:PORT (e.g. 203.0.113.7:443, [2001:db8::7]:443)"),
    }
}

/// The hosts to check: `given`, or the built-in allowlist.
fn signal_hosts(given: &[String]) -> anyhow::Result<Vec<ServerName<'static>>> {
    let names = if given.is_empty() {
        parse_hosts(BUILT_IN_HOSTS).map_err(|e| anyhow::anyhow!("the built-in host list: {e}"))?
    } else {
        given
            .iter()
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .collect()
    };
    let mut hosts = Vec::with_capacity(names.len());
    for name in names {
        match ServerName::try_from(name.clone()) {
            Ok(host @ ServerName::DnsName(_)) if !hosts.contains(&host) => hosts.push(host),
            Ok(ServerName::DnsName(_)) => {}
            _ => bail!("--host {name:?} is not a DNS name (e.g. chat.signal.org)"),
        }
    }
    Ok(hosts)
}

/// The system's CA certificates (empty when none are found).
fn system_certs() -> Vec<CertificateDer<'static>> {
    rustls_native_certs::load_native_certs().certs
}

fn load_ca(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    Ok(tp_net::pem::load_certs(path)?)
}

/// A root store of `certs`; those rustls cannot use are skipped, as browsers do
/// with a system bundle, unless none is left.
fn roots(certs: Vec<CertificateDer<'static>>) -> anyhow::Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    let given = certs.len();
    let (_added, ignored) = store.add_parsable_certificates(certs);
    if given > 0 && ignored == given {
        bail!("none of the {given} CA certificates is usable as a trust anchor");
    }
    Ok(store)
}

/// The outer TLS client configuration: as Signal's apps, ALPN http/1.1 (which
/// the server's website takes, where the relay looks), TLS 1.2 and 1.3.
fn outer_config(roots: RootCertStore) -> ClientConfig {
    let provider = tp_net::tls::provider();
    // Invariant: the provider supports the default versions (aws-lc-rs does).
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports TLS 1.2 and 1.3");
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config
}

/// Resolves `target` (HOST:PORT) within `limit`; the reason in words otherwise.
async fn resolve(target: &str, limit: Duration) -> Result<Vec<SocketAddr>, String> {
    let lookup = tokio::net::lookup_host(target);
    match tokio::time::timeout(limit, lookup).await {
        Err(_) => Err(format!(
            "no answer for {target} within {}",
            report::duration(limit)
        )),
        Ok(Err(e)) => Err(format!("cannot resolve {target}: {e}")),
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(format!("{target} has no address"))
            } else {
                Ok(addrs)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_name_comes_from_a_name_or_a_link() {
        let name = |s: &str| proxy_name(s).unwrap().to_str().into_owned();
        assert_eq!(name("Proxy.Example.org."), "proxy.example.org");
        assert_eq!(
            name("https://signal.tube/#proxy.example.org"),
            "proxy.example.org"
        );
        assert_eq!(
            name("sgnl://signal.tube/#proxy.example.org"),
            "proxy.example.org"
        );
        assert_eq!(name("localhost"), "localhost");
        assert_eq!(name("127.0.0.1"), "127.0.0.1");
        assert!(proxy_name("bad name.org").is_err());
        assert!(proxy_name("").is_err());
    }

    #[test]
    fn connect_wants_a_port() {
        assert_eq!(connect_target("127.0.0.1:8443").unwrap(), "127.0.0.1:8443");
        assert_eq!(connect_target("[::1]:443").unwrap(), "[::1]:443");
        assert_eq!(
            connect_target("proxy.example.org:443").unwrap(),
            "proxy.example.org:443"
        );
        for bad in ["127.0.0.1", ":443", "host:0", "host:http", "host:70000"] {
            assert!(connect_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_default_to_the_built_in_list_and_given_ones_are_checked() {
        let all = signal_hosts(&[]).unwrap();
        assert_eq!(all.len(), 13);
        assert_eq!(all[0].to_str(), "chat.signal.org");
        let given = signal_hosts(&[
            "Chat.Signal.org.".into(),
            "chat.signal.org".into(),
            "cdn.signal.org".into(),
        ])
        .unwrap();
        let given: Vec<_> = given.iter().map(|h| h.to_str().into_owned()).collect();
        assert_eq!(given, ["chat.signal.org", "cdn.signal.org"]);
        assert!(signal_hosts(&["127.0.0.1".into()]).is_err());
        assert!(signal_hosts(&["no such".into()]).is_err());
    }

    #[test]
    fn the_verdict_tells_an_unreachable_server_from_a_failing_relay() {
        let ok = || {
            Ok(probe::Answer {
                total: Duration::ZERO,
                inner: Duration::ZERO,
                version: None,
                seen: None,
            })
        };
        let closed = || {
            Err(Failure::RelayClosed {
                after: Duration::ZERO,
            })
        };
        let refused = || Err(Failure::Tcp(std::io::ErrorKind::ConnectionRefused.into()));
        assert_eq!(verdict(&[ok(), ok()]), Verdict::Works);
        assert_eq!(verdict(&[ok(), closed()]), Verdict::RelayFailed);
        assert_eq!(verdict(&[closed(), refused()]), Verdict::Unreachable);
        assert_eq!(Verdict::Works.exit_code(), 0);
        assert_eq!(Verdict::RelayFailed.exit_code(), 3);
        assert_eq!(Verdict::Unreachable.exit_code(), 4);
    }

    #[test]
    fn unusable_cas_are_refused() {
        assert!(roots(vec![CertificateDer::from(b"junk".to_vec())]).is_err());
        assert!(roots(Vec::new()).unwrap().is_empty());
    }
}
