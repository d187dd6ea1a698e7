//! `tp-server policy check --cert C --connect HOST:PORT` (or `--listen NAME`,
//! `--public-port PORT`, `--service NAME`, `--route NAME`): explain a decision.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, bail};
use policy::{ConnectRequest, Decision, Identity, Policy};
use tp_proto::{Host, Proto};

use crate::Config;

/// Arguments of `tp-server policy check`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("request")
        .required(true)
        .args(["connect", "listen", "public_port", "service", "route"])
))]
pub struct PolicyCheckArgs {
    /// The client certificate (PEM) whose identity to check. Its chain is not verified here.
    #[arg(long, value_name = "PEM")]
    pub cert: PathBuf,
    /// The target, HOST:PORT (IPv6 in brackets: [::1]:22).
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Option<String>,
    /// Instead: may this identity expose a service under NAME (`tp expose --name`)?
    #[arg(long, value_name = "NAME")]
    pub listen: Option<String>,
    /// Instead: may this identity open public PORT (`tp expose --public`)?
    #[arg(long, value_name = "PORT")]
    pub public_port: Option<u16>,
    /// Instead: may this identity connect to the exposed service NAME?
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Instead: may this identity use the `[[terminate]]` route NAME (one with
    /// `client_cert = "required"`)?
    #[arg(long, value_name = "NAME")]
    pub route: Option<String>,
    /// UDP instead of TCP.
    #[arg(long, requires = "connect")]
    pub udp: bool,
    /// Use this policy file instead of the one the server config names.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub policy: Option<PathBuf>,
    /// The server config whose policy to use.
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "/etc/tp/server.toml"
    )]
    pub config: PathBuf,
    /// Check these addresses instead of resolving HOST (repeatable), to see what a
    /// given DNS answer would mean.
    #[arg(long, value_name = "IP", requires = "connect")]
    pub resolve: Vec<IpAddr>,
}

/// The outcome, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// At least one address would be dialed.
    Allowed,
    /// Nothing would be dialed.
    Denied,
}

fn split_host_port(s: &str) -> anyhow::Result<(Host, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("{s:?}: write HOST:PORT"))?;
    if host.contains(':') && !host.starts_with('[') {
        bail!("{s:?}: write IPv6 addresses in brackets, e.g. [::1]:22");
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .with_context(|| format!("{port:?} is not a port from 1 to 65535"))?;
    Ok((
        Host::parse(host).with_context(|| format!("{host:?}"))?,
        port,
    ))
}

/// Prints the identity, the pre-DNS decision and the decision for each address.
pub fn check(args: &PolicyCheckArgs, out: &mut dyn Write) -> anyhow::Result<Verdict> {
    let (policy, routes) = match &args.policy {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
            (Policy::from_toml(&text, &path.display().to_string())?, None)
        }
        None => {
            let config = Config::load(&args.config)?;
            (config.policy, Some(config.terminate))
        }
    };
    let certs = tp_net::pem::load_certs(&args.cert)?;
    let who =
        Identity::from_cert_der(&certs[0]).with_context(|| format!("{}", args.cert.display()))?;
    let groups = policy.groups_of(&who);
    writeln!(
        out,
        "identity  {who} ({}){}",
        who.kind(),
        if groups.is_empty() {
            String::new()
        } else {
            format!(", groups: {}", groups.join(", "))
        }
    )?;
    if let Some(name) = &args.route {
        writeln!(out, "request   use route {name}")?;
        if let Some(routes) = &routes {
            match routes
                .iter()
                .find(|r| r.name.as_deref() == Some(name.as_str()))
            {
                None => bail!(
                    "{}: no [[terminate]] route is named {name:?}",
                    args.config.display()
                ),
                Some(route) if !route.client_cert => {
                    writeln!(
                        out,
                        "result    allow: route {name} asks for no client certificate, \
                         so anyone may use it (the policy is not asked)"
                    )?;
                    return Ok(Verdict::Allowed);
                }
                Some(_) => {}
            }
        }
        return Ok(verdict(&policy.decide_route(&who, name), out)?);
    }
    let reverse = match (&args.listen, args.public_port, &args.service) {
        (Some(name), _, _) => Some((
            format!("listen on service {name}"),
            policy.decide_listen_name(&who, name),
        )),
        (_, Some(port), _) => Some((
            format!("listen on public port {port}"),
            policy.decide_listen_port(&who, port),
        )),
        (_, _, Some(name)) => Some((
            format!("connect to service {name}"),
            policy.decide_service(&who, name),
        )),
        _ => None,
    };
    if let Some((request, decision)) = reverse {
        writeln!(out, "request   {request}")?;
        return Ok(verdict(&decision, out)?);
    }
    let connect = args.connect.as_deref().unwrap_or_default();
    let (host, port) = split_host_port(connect)?;
    let proto = if args.udp { Proto::Udp } else { Proto::Tcp };
    writeln!(out, "request   connect {proto} {host}:{port}")?;

    let pre = policy.precheck_connect(&who, proto, &host, port);
    writeln!(out, "pre-DNS   {pre}")?;
    if !pre.is_allow() {
        writeln!(out, "result    deny (the name would not even be resolved)")?;
        return Ok(Verdict::Denied);
    }
    let addrs: Vec<IpAddr> = match (&host, args.resolve.is_empty()) {
        (_, false) => args.resolve.iter().map(|a| a.to_canonical()).collect(),
        (Host::Ip(ip), true) => vec![*ip],
        (Host::Name(name), true) => {
            let resolved = (name.as_str(), port);
            std::net::ToSocketAddrs::to_socket_addrs(&resolved)
                .with_context(|| {
                    format!("cannot resolve {name} (use --resolve IP to try an answer)")
                })?
                .map(|a: SocketAddr| a.ip().to_canonical())
                .collect()
        }
    };
    let mut allowed = None;
    for addr in addrs {
        let decision = policy.decide_connect(
            &who,
            &ConnectRequest {
                proto,
                host: &host,
                port,
                addr,
            },
        );
        writeln!(out, "{addr:<9} {decision}")?;
        if let (None, Decision::Allow { rule }) = (&allowed, &decision) {
            allowed = Some((addr, rule.clone()));
        }
    }
    match allowed {
        Some((addr, rule)) => {
            writeln!(
                out,
                "result    allow: would dial {} (rule {rule:?})",
                SocketAddr::new(addr, port)
            )?;
            Ok(Verdict::Allowed)
        }
        None => {
            writeln!(out, "result    deny: no address may be dialed")?;
            Ok(Verdict::Denied)
        }
    }
}

/// Prints `decision` as the result and gives its verdict.
fn verdict(decision: &Decision, out: &mut dyn Write) -> std::io::Result<Verdict> {
    writeln!(out, "result    {decision}")?;
    Ok(if decision.is_allow() {
        Verdict::Allowed
    } else {
        Verdict::Denied
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::pki::{Ca, LeafSpec, Validity};

    fn args(dir: &std::path::Path) -> PolicyCheckArgs {
        let validity = Validity::for_ttl(SystemTime::now(), Duration::from_secs(3_600));
        let ca = Ca::generate("test CA", validity).unwrap();
        let alice = ca.issue(&LeafSpec::client("alice@test", validity)).unwrap();
        alice.save(dir, "alice").unwrap();
        let policy = dir.join("policy.toml");
        std::fs::write(
            &policy,
            "[[rule]]\nname = \"laptops\"\nwho = [\"alice@test\"]\nlisten = [\"alice-*\"]\npublic_ports = [\"2200-2299\"]\nservices = [\"db\"]\nroutes = [\"dot\"]\n",
        )
        .unwrap();
        PolicyCheckArgs {
            cert: dir.join("alice.pem"),
            connect: None,
            listen: None,
            public_port: None,
            service: None,
            route: None,
            udp: false,
            policy: Some(policy),
            config: PathBuf::new(),
            resolve: Vec::new(),
        }
    }

    fn run(args: &PolicyCheckArgs) -> (Verdict, String) {
        let mut out = Vec::new();
        let verdict = check(args, &mut out).unwrap();
        (verdict, String::from_utf8(out).unwrap())
    }

    #[test]
    fn reverse_tunnel_requests_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let listen = |name: &str| PolicyCheckArgs {
            listen: Some(name.into()),
            ..args(dir.path())
        };
        let (verdict, text) = run(&listen("alice-laptop"));
        assert_eq!(verdict, Verdict::Allowed, "{text}");
        assert!(
            text.contains("request   listen on service alice-laptop"),
            "{text}"
        );
        assert!(
            text.contains("result    allow (rule \"laptops\")"),
            "{text}"
        );
        assert_eq!(run(&listen("bob-laptop")).0, Verdict::Denied);

        let port = |p: u16| PolicyCheckArgs {
            public_port: Some(p),
            ..args(dir.path())
        };
        assert_eq!(run(&port(2222)).0, Verdict::Allowed);
        let (verdict, text) = run(&port(2300));
        assert_eq!(verdict, Verdict::Denied);
        assert!(text.contains("result    deny: "), "{text}");

        let service = |name: &str| PolicyCheckArgs {
            service: Some(name.into()),
            ..args(dir.path())
        };
        assert_eq!(run(&service("db")).0, Verdict::Allowed);
        assert_eq!(run(&service("dbx")).0, Verdict::Denied);

        let route = |name: &str| PolicyCheckArgs {
            route: Some(name.into()),
            ..args(dir.path())
        };
        let (verdict, text) = run(&route("dot"));
        assert_eq!(verdict, Verdict::Allowed, "{text}");
        assert!(text.contains("request   use route dot"), "{text}");
        assert!(
            text.contains("result    allow (rule \"laptops\")"),
            "{text}"
        );
        let (verdict, text) = run(&route("redis"));
        assert_eq!(verdict, Verdict::Denied);
        assert!(
            text.contains("result    deny: no rule allows alice@test to use route redis"),
            "{text}"
        );
    }

    #[test]
    fn host_port_spellings() {
        assert_eq!(
            split_host_port("[::1]:22").unwrap(),
            (Host::parse("::1").unwrap(), 22)
        );
        assert_eq!(split_host_port("DB1.internal:5432").unwrap().1, 5432);
        assert!(split_host_port("::1:22").is_err());
        assert!(split_host_port("db1:0").is_err());
        assert!(split_host_port("db1").is_err());
    }
}
