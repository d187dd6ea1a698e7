//! `HOST:PORT` spellings: the tp server's address and `tp up`'s target.
//!
//! IPv6 addresses are written in brackets (`[::1]:22`), as in URLs and ssh; a bare
//! IPv6 address with a port is ambiguous (`::1:22`) and is rejected with a hint.
//!
//! A target is a host the server dials, or a service another client exposes
//! ([`Dest`]): a single label that could be a service name (`alice-laptop`) is a
//! service; a single-label host is written with a trailing dot (`db1.`).

use std::fmt;

use tp_proto::{Connect, ConnectTarget, Hello, Host, HostError, Proto};

/// The port the tp server listens on when `--server` names no port.
pub const DEFAULT_SERVER_PORT: u16 = 443;

/// Why a `HOST:PORT` spelling was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddrError {
    /// There is no `:PORT` and no default applies.
    #[error("{0:?} has no port: write HOST:PORT")]
    MissingPort(String),
    /// The port is not a number from 1 to 65535.
    #[error("{0:?} is not a port number from 1 to 65535")]
    BadPort(String),
    /// An IPv6 address with a port but without brackets.
    #[error("{0:?} is ambiguous: write IPv6 addresses in brackets, e.g. [::1]:22")]
    UnbracketedIpv6(String),
    /// The host part is empty or not a valid name or address.
    #[error("{spelling:?}: {source}")]
    BadHost {
        /// What the user wrote.
        spelling: String,
        /// Why the host was rejected.
        source: HostError,
    },
    /// Not a service name: 1 to 63 characters of `a-z`, `0-9`, `_` and `-`.
    #[error("{0:?} is not a service name: use 1 to 63 characters of a-z, 0-9, _ and -")]
    BadService(String),
}

/// The longest service name.
pub const MAX_SERVICE_LEN: usize = 63;

/// A service name as `listen` registers it and `connect` reaches it: 1 to 63
/// characters of `[a-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceName(String);

impl ServiceName {
    /// Parses a service name exactly as written (no case folding).
    pub fn parse(s: &str) -> Result<Self, AddrError> {
        if is_service_name(s) {
            Ok(ServiceName(s.to_owned()))
        } else {
            Err(AddrError::BadService(s.to_owned()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_service_name(s: &str) -> bool {
    (1..=MAX_SERVICE_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// What a tunnel reaches: a host the server dials, or a service another client
/// exposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// A DNS name or an address, dialed by the server.
    Host(Host),
    /// A service name registered with `listen`; the tunnel carries end-to-end
    /// TLS with the exposing client.
    Service(ServiceName),
}

impl Dest {
    /// Reads a target as typed: a single label (no dot), not an address and
    /// not `localhost`, that is a valid service name once lowercased is a
    /// service; anything else is a host (`db1.`, with its trailing dot, is the
    /// single-label host `db1`).
    pub fn parse(s: &str) -> Result<Self, AddrError> {
        let host = parse_host(s);
        if let Ok(Host::Ip(_)) = host {
            return host.map(Dest::Host);
        }
        let lower = s.to_ascii_lowercase();
        if lower != "localhost" && is_service_name(&lower) {
            return Ok(Dest::Service(ServiceName(lower)));
        }
        host.map(Dest::Host)
    }

    /// The `connect` target for `port`.
    pub fn connect_target(&self, port: u16) -> ConnectTarget {
        match self {
            Dest::Host(host) => ConnectTarget::Addr {
                host: host.clone(),
                port,
            },
            Dest::Service(name) => ConnectTarget::Service {
                name: name.as_str().to_owned(),
                port: Some(port),
            },
        }
    }

    /// The service, if this is one.
    pub fn service(&self) -> Option<&ServiceName> {
        match self {
            Dest::Service(name) => Some(name),
            Dest::Host(_) => None,
        }
    }
}

impl fmt::Display for Dest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dest::Host(host) => write!(f, "{host}"),
            Dest::Service(name) => write!(f, "{name}"),
        }
    }
}

/// Parses a port from 1 to 65535.
pub fn parse_port(s: &str) -> Result<u16, AddrError> {
    match s.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(AddrError::BadPort(s.to_owned())),
    }
}

/// Parses a local port for `tp up`; `0` asks the system to choose one.
pub fn parse_local_port(s: &str) -> Result<u16, AddrError> {
    s.parse::<u16>()
        .map_err(|_| AddrError::BadPort(s.to_owned()))
}

/// Splits `host:port` or `[v6]:port` into the host as written (brackets kept, for
/// [`Host::parse`] to check) and the port text, `None` when there is no `:PORT`.
fn split_host_port(s: &str) -> Result<(&str, Option<&str>), AddrError> {
    if s.starts_with('[') {
        let Some(close) = s.find(']') else {
            return Err(AddrError::BadHost {
                spelling: s.to_owned(),
                source: HostError::InvalidChar('['),
            });
        };
        let (host, after) = s.split_at(close + 1);
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(AddrError::BadPort(after.to_owned())),
            },
        };
    }
    match s.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => Err(AddrError::UnbracketedIpv6(s.to_owned())),
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((s, None)),
    }
}

/// Where the tp server is: a name to resolve or an address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// The server's name or address, normalised by [`Host::parse`]. Also the
    /// default TLS server name.
    pub host: Host,
    /// The TCP port.
    pub port: u16,
}

impl ServerAddr {
    /// Parses `HOST`, `HOST:PORT` or `[IPv6]:PORT`; the port defaults to
    /// [`DEFAULT_SERVER_PORT`].
    pub fn parse(s: &str) -> Result<Self, AddrError> {
        let (host, port) = split_host_port(s)?;
        let port = port.map(parse_port).transpose()?;
        Ok(ServerAddr {
            host: parse_host(host)?,
            port: port.unwrap_or(DEFAULT_SERVER_PORT),
        })
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_host_port(f, &self.host, self.port)
    }
}

/// What a tunnel connects to, as checked on the client before dialing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host (validated and normalised by [`Host::parse`]) or service.
    pub dest: Dest,
    /// The target port, 1 to 65535 (for a service, informational).
    pub port: u16,
}

impl Target {
    /// Parses `HOST:PORT`, `[IPv6]:PORT` or `SERVICE:PORT` (see
    /// [`Dest::parse`]); the port is required.
    pub fn parse(s: &str) -> Result<Self, AddrError> {
        let (host, port) = split_host_port(s)?;
        let port = port.ok_or_else(|| AddrError::MissingPort(s.to_owned()))?;
        Ok(Target {
            dest: Dest::parse(host)?,
            port: parse_port(port)?,
        })
    }

    /// A host target.
    pub fn host(host: Host, port: u16) -> Self {
        Target {
            dest: Dest::Host(host),
            port,
        }
    }

    /// The hello asking for a tunnel of `proto` to this target.
    pub fn hello(&self, proto: Proto) -> Hello {
        Hello::Connect(Connect {
            proto,
            target: self.dest.connect_target(self.port),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.dest {
            Dest::Host(host) => fmt_host_port(f, host, self.port),
            Dest::Service(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// Parses a target host as ssh's `%h` gives it: a name, an IPv4 address, or an
/// IPv6 address with or without brackets.
pub fn parse_host(s: &str) -> Result<Host, AddrError> {
    Host::parse(s).map_err(|source| AddrError::BadHost {
        spelling: s.to_owned(),
        source,
    })
}

fn fmt_host_port(f: &mut fmt::Formatter<'_>, host: &Host, port: u16) -> fmt::Result {
    match host {
        Host::Ip(std::net::IpAddr::V6(v6)) => write!(f, "[{v6}]:{port}"),
        _ => write!(f, "{host}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = Target::parse("db1.internal:5432").unwrap();
        assert_eq!(t.dest, Dest::Host(Host::Name("db1.internal".into())));
        assert_eq!(t.port, 5432);
        assert_eq!(t.to_string(), "db1.internal:5432");

        let t = Target::parse("[::1]:22").unwrap();
        assert_eq!(t.dest, Dest::Host(Host::Ip("::1".parse().unwrap())));
        assert_eq!(t.to_string(), "[::1]:22");

        let t = Target::parse("10.0.0.7:80").unwrap();
        assert_eq!(t.dest, Dest::Host(Host::Ip("10.0.0.7".parse().unwrap())));

        let t = Target::parse("alice-laptop:22").unwrap();
        assert_eq!(
            t.dest,
            Dest::Service(ServiceName::parse("alice-laptop").unwrap())
        );
        assert_eq!(t.to_string(), "alice-laptop:22");
        assert_eq!(
            t.hello(Proto::Tcp),
            Hello::Connect(Connect {
                proto: Proto::Tcp,
                target: ConnectTarget::Service {
                    name: "alice-laptop".into(),
                    port: Some(22)
                }
            })
        );
    }

    #[test]
    fn a_single_label_is_a_service_and_a_trailing_dot_makes_it_a_host() {
        let service = |s: &str| Dest::Service(ServiceName(s.into()));
        let host = |s: &str| Dest::Host(Host::parse(s).unwrap());
        let cases = [
            ("alice-laptop", service("alice-laptop")),
            ("Alice-Laptop", service("alice-laptop")),
            ("db1", service("db1")),
            ("_svc", service("_svc")),
            ("-x-", service("-x-")),
            ("db1.", host("db1")),
            ("db1.internal", host("db1.internal")),
            ("localhost", host("localhost")),
            ("LocalHost", host("localhost")),
            ("localhost.", host("localhost")),
            // Every spelling of an address is an address.
            ("127.1", host("127.0.0.1")),
            ("2130706433", host("127.0.0.1")),
            ("0x7f000001", host("127.0.0.1")),
            ("22", host("0.0.0.22")),
            ("::1", host("::1")),
        ];
        for (input, want) in cases {
            assert_eq!(Dest::parse(input).unwrap(), want, "{input}");
        }
        // 64 characters: too long for a service, and for a DNS label.
        assert!(Dest::parse(&"a".repeat(64)).is_err());
        assert_eq!(
            Dest::parse(&"a".repeat(63)).unwrap(),
            service(&"a".repeat(63))
        );
        assert!(Dest::parse("a b").is_err());
        assert!(Dest::parse("").is_err());
    }

    #[test]
    fn service_names_are_strict() {
        assert!(ServiceName::parse("alice-laptop").is_ok());
        assert!(ServiceName::parse("a_b-9").is_ok());
        for bad in ["", "Alice", "a.b", "a b", "é", &"x".repeat(64)] {
            let err = ServiceName::parse(bad).unwrap_err();
            assert!(matches!(err, AddrError::BadService(_)), "{bad}: {err:?}");
        }
    }

    #[test]
    fn bad_targets_are_rejected_with_the_reason() {
        type Check = fn(&AddrError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("db1.internal", |e| matches!(e, AddrError::MissingPort(_))),
            ("[::1]", |e| matches!(e, AddrError::MissingPort(_))),
            ("db1:0", |e| matches!(e, AddrError::BadPort(_))),
            ("db1:65536", |e| matches!(e, AddrError::BadPort(_))),
            ("db1:-1", |e| matches!(e, AddrError::BadPort(_))),
            ("db1:ssh", |e| matches!(e, AddrError::BadPort(_))),
            ("db1:", |e| matches!(e, AddrError::BadPort(_))),
            ("[::1]22", |e| matches!(e, AddrError::BadPort(_))),
            ("::1:22", |e| matches!(e, AddrError::UnbracketedIpv6(_))),
            ("[::1:22", |e| matches!(e, AddrError::BadHost { .. })),
            (":22", |e| matches!(e, AddrError::BadHost { .. })),
            ("a b:22", |e| matches!(e, AddrError::BadHost { .. })),
            ("[nothost]:22", |e| matches!(e, AddrError::BadHost { .. })),
        ];
        for (input, expected) in cases {
            let err = Target::parse(input).expect_err(input);
            assert!(expected(&err), "{input}: {err:?}");
        }
    }

    #[test]
    fn server_port_defaults_to_443() {
        let s = ServerAddr::parse("tp.example.org").unwrap();
        assert_eq!(s.host, Host::Name("tp.example.org".into()));
        assert_eq!(s.port, 443);
        let s = ServerAddr::parse("tp.example.org:8443").unwrap();
        assert_eq!(s.port, 8443);
        let s = ServerAddr::parse("[2001:db8::1]").unwrap();
        assert_eq!(s.host, Host::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(s.to_string(), "[2001:db8::1]:443");
        assert!(ServerAddr::parse("2001:db8::1").is_err());
        assert!(ServerAddr::parse("tp.example.org:0").is_err());
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("22"), Ok(22));
        assert!(parse_port("0").is_err());
        assert_eq!(parse_local_port("0"), Ok(0));
        assert!(parse_local_port("70000").is_err());
    }
}
