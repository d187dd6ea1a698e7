//! The server configuration: `server.toml` parsed into typed values.
//!
//! Parse, don't validate: [`Config::load`] reads the TOML into `Raw*` structs that
//! keep spans, then converts every value to its type (socket address, durations,
//! loaded certificates, the parsed policy), failing with the file, line and column
//! of the first bad value. `docs/config.md` documents every key.

mod error;
mod raw;
mod terminate;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use policy::Policy;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use toml::Spanned;

pub use error::{ConfigError, Location};
use raw::{
    RawConfig, RawLimits, RawPassthrough, RawQuic, RawReverse, RawSignal, RawStealth, RawWebsite,
};
use tp_net::quic::QuicLimits;

use crate::pki::RevocationList;

/// Timeouts and limits of the server. Defaults are documented on each field.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Total time for the TLS handshake (default 10s).
    pub handshake_timeout: Duration,
    /// Total time for the client's hello line after the handshake (default 10s).
    pub hello_timeout: Duration,
    /// Time to resolve and dial the target (default 10s).
    pub connect_timeout: Duration,
    /// A tunnel with no byte moving either way for this long is closed (default 1h).
    pub idle_timeout: Duration,
    /// A UDP tunnel with no datagram either way for this long is closed (default 2m).
    pub udp_idle_timeout: Duration,
    /// On shutdown, how long open tunnels may take to finish (default 30s).
    pub drain_timeout: Duration,
    /// Connections served at once; more wait in the kernel's accept queue (default 10000).
    pub max_connections: NonZeroUsize,
    /// Connections from one source (an IPv4 address or an IPv6 /64) that may be in
    /// the TLS handshake at once; more are closed at once (default 64).
    pub max_handshakes_per_source: NonZeroUsize,
    /// Tunnels one identity may have open at once, over both transports; more are
    /// answered `busy` (default 1000).
    pub max_tunnels_per_identity: NonZeroUsize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3_600),
            udp_idle_timeout: Duration::from_secs(120),
            drain_timeout: Duration::from_secs(30),
            max_connections: NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
            max_handshakes_per_source: NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN),
            max_tunnels_per_identity: NonZeroUsize::new(1_000).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// TLS material, loaded.
#[derive(Debug)]
pub struct TlsMaterial {
    /// The server's certificate chain, leaf first.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The server's private key.
    pub key: PrivateKeyDer<'static>,
    /// Trust anchors (and intermediates) for client certificates. Empty when the
    /// config names none: then no client certificate is trusted, so no tunnel opens.
    pub client_ca: Vec<CertificateDer<'static>>,
    /// Refused client certificates.
    pub revoked: RevocationList,
}

impl TlsMaterial {
    /// Whether client certificates can be verified at all (`[tls] client_ca` is
    /// set): without it the server opens no tunnels.
    pub fn has_client_ca(&self) -> bool {
        !self.client_ca.is_empty()
    }
}

/// The most `workers` a config may ask for.
pub const MAX_WORKERS: usize = 1024;

/// A loaded, typed server configuration.
#[derive(Debug)]
pub struct Config {
    /// The TCP address to listen on.
    pub listen: SocketAddr,
    /// Threads that serve TCP connections ([`MAX_WORKERS`] at most); `None`: one per
    /// core this process may run on.
    pub workers: Option<NonZeroUsize>,
    /// Certificates and keys.
    pub tls: TlsMaterial,
    /// The access policy.
    pub policy: Policy,
    /// Where the policy came from (for logs).
    pub policy_path: PathBuf,
    /// Timeouts and limits.
    pub limits: Limits,
    /// QUIC on the same port over UDP.
    pub quic: QuicSettings,
    /// Reverse tunnels (`tp expose`).
    pub reverse: ReverseSettings,
    /// What clients that are not tp clients get on the TCP port.
    pub website: WebsiteSettings,
    /// TLS connections relayed untouched to another TLS server, by SNI.
    pub passthrough: Vec<crate::passthrough::Route>,
    /// The Signal TLS proxy.
    pub signal: crate::website::signal::SignalSettings,
    /// TLS terminated here in front of plain TCP services, by SNI and ALPN on the
    /// main port, or on their own ports.
    pub terminate: Vec<crate::terminate::Route>,
    /// The server names on which tunnels hide behind the website.
    pub stealth: crate::stealth::StealthSettings,
}

/// The website on the tunnel port: everyone whose TLS ClientHello does not offer
/// ALPN `tp/1` gets it.
#[derive(Debug, Clone)]
pub struct WebsiteSettings {
    /// Certificates chosen by SNI (and by what the client can verify, RSA or
    /// ECDSA), each with the DNS names it serves; `[tls] cert` otherwise.
    pub certs: Vec<SiteCert>,
    /// Where website connections go (HTTP/1.1, and HTTP/2 without `h2_backend`);
    /// `None`: a built-in page answers.
    pub backend: Option<crate::website::Backend>,
    /// Where connections that negotiated `h2` go; when set, `h2` is offered.
    pub h2_backend: Option<crate::website::Backend>,
    /// Send a PROXY protocol v2 header with the client's address first (default true).
    pub proxy_protocol: bool,
    /// Connections that are not tunnels (website, passthrough, terminate, Signal)
    /// one source (an IPv4 address or an IPv6 /64) may hold open at once
    /// (default 64); more are closed at once. They do not use up the tunnels'
    /// `max_connections` unchecked.
    pub max_connections_per_source: NonZeroUsize,
    /// Those connections close after this long without a byte either way
    /// (default 5m).
    pub idle_timeout: Duration,
    /// The page answered without a backend (`page`: an HTML file, at most
    /// 1 MiB; default a small built-in page).
    pub page: std::sync::Arc<str>,
}

/// One website certificate, loaded and checked against its key.
#[derive(Debug, Clone)]
pub struct SiteCert {
    /// Its DNS names (subject alternative names), lowercase.
    pub names: Vec<String>,
    /// The chain and key.
    pub key: std::sync::Arc<rustls::sign::CertifiedKey>,
}

impl Default for WebsiteSettings {
    fn default() -> Self {
        WebsiteSettings {
            certs: Vec::new(),
            backend: None,
            h2_backend: None,
            proxy_protocol: true,
            max_connections_per_source: NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN),
            idle_timeout: Duration::from_secs(300),
            page: crate::website::page::BUILT_IN.into(),
        }
    }
}

/// Reverse tunnels: where public ports listen, and their control channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReverseSettings {
    /// The address public ports (`tp expose --public PORT`) listen on (default
    /// `0.0.0.0`, every IPv4 interface; `::` for IPv6 too).
    pub public_address: IpAddr,
    /// Over TLS/TCP, how long an announced session waits for the exposing
    /// client's `accept` (default 10s).
    pub session_timeout: Duration,
    /// A control channel quiet for this long gets a `ping`; three intervals of
    /// silence from the client end it (default 15s). The registration's
    /// certificate and policy are checked again this often too.
    pub heartbeat: Duration,
    /// Connections one public port serves at once; more are closed at once
    /// (default 1000).
    pub max_public_connections: NonZeroUsize,
    /// Of those, from one source (an IPv4 address or an IPv6 /64) (default 64).
    pub max_public_connections_per_source: NonZeroUsize,
}

impl Default for ReverseSettings {
    fn default() -> Self {
        ReverseSettings {
            public_address: IpAddr::from([0, 0, 0, 0]),
            session_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(15),
            max_public_connections: NonZeroUsize::new(1_000).unwrap_or(NonZeroUsize::MIN),
            max_public_connections_per_source: NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// The QUIC listener's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuicSettings {
    /// Serve QUIC on UDP at the `listen` address (default true).
    pub enabled: bool,
    /// Windows, stream count, idle timeout and keep-alive of each connection.
    pub limits: QuicLimits,
    /// QUIC connections one identity may have open at once (default 16): one
    /// connection carries many tunnels, so a client needs few.
    pub max_connections_per_identity: NonZeroUsize,
}

impl Default for QuicSettings {
    fn default() -> Self {
        QuicSettings {
            enabled: true,
            limits: QuicLimits::default(),
            max_connections_per_identity: NonZeroUsize::new(16).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// Conversion context: the file being read, for locations and relative paths.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn at<T>(&self, spanned: &Spanned<T>) -> Location {
        Location::at(self.path.to_owned(), self.text, spanned.span().start)
    }

    fn invalid<T>(
        &self,
        spanned: &Spanned<T>,
        field: &'static str,
        message: impl ToString,
    ) -> ConfigError {
        ConfigError::Invalid {
            at: self.at(spanned),
            field,
            message: message.to_string(),
        }
    }

    /// A path from the file, relative to the file's directory.
    fn path(&self, value: &str) -> PathBuf {
        let p = Path::new(value);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    fn duration(
        &self,
        raw: &Option<Spanned<String>>,
        field: &'static str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match raw {
            None => Ok(default),
            Some(s) => {
                tp_net::duration::parse_timeout(s.get_ref()).map_err(|e| self.invalid(s, field, e))
            }
        }
    }

    fn limits(&self, raw: &RawLimits) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let max_connections =
            self.count(&raw.max_connections, "max_connections", d.max_connections)?;
        let max_handshakes_per_source = self.count(
            &raw.max_handshakes_per_source,
            "max_handshakes_per_source",
            d.max_handshakes_per_source,
        )?;
        let max_tunnels_per_identity = self.count(
            &raw.max_tunnels_per_identity,
            "max_tunnels_per_identity",
            d.max_tunnels_per_identity,
        )?;
        Ok(Limits {
            handshake_timeout: self.duration(
                &raw.handshake_timeout,
                "handshake_timeout",
                d.handshake_timeout,
            )?,
            hello_timeout: self.duration(&raw.hello_timeout, "hello_timeout", d.hello_timeout)?,
            connect_timeout: self.duration(
                &raw.connect_timeout,
                "connect_timeout",
                d.connect_timeout,
            )?,
            idle_timeout: self.duration(&raw.idle_timeout, "idle_timeout", d.idle_timeout)?,
            udp_idle_timeout: self.duration(
                &raw.udp_idle_timeout,
                "udp_idle_timeout",
                d.udp_idle_timeout,
            )?,
            drain_timeout: self.duration(&raw.drain_timeout, "drain_timeout", d.drain_timeout)?,
            max_connections,
            max_handshakes_per_source,
            max_tunnels_per_identity,
        })
    }

    fn signal(
        &self,
        raw: &RawSignal,
    ) -> Result<crate::website::signal::SignalSettings, ConfigError> {
        use crate::website::signal::{BUILT_IN_HOSTS, parse_hosts};
        let hosts = match &raw.hosts {
            None => parse_hosts(BUILT_IN_HOSTS).map_err(ConfigError::Tls)?,
            Some(file) => {
                let path = self.path(file.get_ref());
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| self.invalid(file, "hosts", format!("{}: {e}", path.display())))?;
                parse_hosts(&text)
                    .map_err(|e| self.invalid(file, "hosts", format!("{}: {e}", path.display())))?
            }
        };
        let mut upstreams = std::collections::HashMap::new();
        for (name, addr) in &raw.upstreams {
            let parsed: SocketAddr = addr
                .get_ref()
                .parse()
                .map_err(|_| self.invalid(addr, "upstreams", "expected IP:PORT"))?;
            upstreams.insert(name.to_ascii_lowercase(), parsed);
        }
        Ok(crate::website::signal::SignalSettings {
            enabled: raw.enabled.unwrap_or(false),
            hosts,
            upstreams,
        })
    }

    /// A route's `names`: server names or `*.` and a name, lowercase.
    fn server_names(&self, raw: &Spanned<Vec<String>>) -> Result<Vec<String>, ConfigError> {
        let names: Vec<String> = raw
            .get_ref()
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect();
        let bad = names.iter().find(|n| {
            let bare = n.strip_prefix("*.").unwrap_or(n);
            bare.is_empty()
                || !bare
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        });
        if names.is_empty() || bad.is_some() {
            let why = match bad {
                Some(name) => format!("{name:?} is not a server name (or *.name)"),
                None => "name at least one server name".into(),
            };
            return Err(self.invalid(raw, "names", why));
        }
        Ok(names)
    }

    fn stealth(
        &self,
        raw: &RawStealth,
        client_ca: bool,
    ) -> Result<crate::stealth::StealthSettings, ConfigError> {
        let Some(names) = &raw.names else {
            return Ok(crate::stealth::StealthSettings::default());
        };
        if !client_ca {
            return Err(self.invalid(
                names,
                "names",
                "stealth tunnels need [tls] client_ca to verify client certificates",
            ));
        }
        // `*` alone: every connection, with a server name or without.
        let everywhere = names.get_ref().iter().any(|n| n == "*");
        if everywhere && names.get_ref().len() > 1 {
            return Err(self.invalid(
                names,
                "names",
                "\"*\" covers every name already: list it alone",
            ));
        }
        let names = if everywhere {
            vec!["*".to_owned()]
        } else {
            self.server_names(names)?
        };
        Ok(crate::stealth::StealthSettings { names })
    }

    fn passthrough(
        &self,
        raw: &[RawPassthrough],
    ) -> Result<Vec<crate::passthrough::Route>, ConfigError> {
        let mut routes = Vec::with_capacity(raw.len());
        for route in raw {
            let names = self.server_names(&route.names)?;
            let backend = crate::website::Backend::parse(route.backend.get_ref())
                .map_err(|e| self.invalid(&route.backend, "backend", e))?;
            routes.push(crate::passthrough::Route {
                names,
                backend,
                proxy_protocol: route.proxy_protocol.unwrap_or(false),
            });
        }
        Ok(routes)
    }

    fn website(&self, raw: &RawWebsite) -> Result<WebsiteSettings, ConfigError> {
        let backend = |raw: &Option<Spanned<String>>, field| {
            raw.as_ref()
                .map(|s| {
                    crate::website::Backend::parse(s.get_ref())
                        .map_err(|e| self.invalid(s, field, e))
                })
                .transpose()
        };
        let mut certs = Vec::with_capacity(raw.certs.len());
        for site in &raw.certs {
            let chain = self.certs(&site.cert)?;
            let key = tp_net::pem::load_key(&self.path(site.key.get_ref())).map_err(|error| {
                ConfigError::Pem {
                    at: self.at(&site.key),
                    error,
                }
            })?;
            let names = crate::website::certs::dns_names(&chain[0])
                .map_err(|e| self.invalid(&site.cert, "certs", e))?;
            let key = crate::website::certs::certified(chain, &key)
                .map_err(|e| self.invalid(&site.key, "certs", e))?;
            certs.push(SiteCert { names, key });
        }
        let d = WebsiteSettings::default();
        let settings = WebsiteSettings {
            certs,
            backend: backend(&raw.backend, "backend")?,
            h2_backend: backend(&raw.h2_backend, "h2_backend")?,
            proxy_protocol: raw.proxy_protocol.unwrap_or(true),
            max_connections_per_source: self.count(
                &raw.max_connections_per_source,
                "max_connections_per_source",
                d.max_connections_per_source,
            )?,
            idle_timeout: self.duration(&raw.idle_timeout, "idle_timeout", d.idle_timeout)?,
            page: match &raw.page {
                None => d.page,
                Some(file) => {
                    let path = self.path(file.get_ref());
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        self.invalid(file, "page", format!("{}: {e}", path.display()))
                    })?;
                    if text.len() > 1024 * 1024 {
                        return Err(self.invalid(file, "page", "larger than 1 MiB"));
                    }
                    text.into()
                }
            },
        };
        if let (None, Some(h2)) = (&settings.backend, &raw.h2_backend) {
            return Err(self.invalid(
                h2,
                "h2_backend",
                "needs `backend` too: HTTP/1.1 clients go there",
            ));
        }
        Ok(settings)
    }

    fn reverse(&self, raw: &RawReverse) -> Result<ReverseSettings, ConfigError> {
        let d = ReverseSettings::default();
        let public_address = match &raw.public_address {
            None => d.public_address,
            Some(s) => s.get_ref().parse().map_err(|_| {
                self.invalid(
                    s,
                    "public_address",
                    "expected an IP address such as 0.0.0.0 or ::",
                )
            })?,
        };
        Ok(ReverseSettings {
            public_address,
            session_timeout: self.duration(
                &raw.session_timeout,
                "session_timeout",
                d.session_timeout,
            )?,
            heartbeat: self.duration(&raw.heartbeat, "heartbeat", d.heartbeat)?,
            max_public_connections: self.count(
                &raw.max_public_connections,
                "max_public_connections",
                d.max_public_connections,
            )?,
            max_public_connections_per_source: self.count(
                &raw.max_public_connections_per_source,
                "max_public_connections_per_source",
                d.max_public_connections_per_source,
            )?,
        })
    }

    fn quic(&self, raw: &RawQuic) -> Result<QuicSettings, ConfigError> {
        let d = QuicSettings::default();
        let window = |raw: &Option<Spanned<i64>>, field, default: u32| match raw {
            None => Ok(default),
            Some(n) => u32::try_from(*n.get_ref())
                .ok()
                .filter(|n| (16 * 1024..=1 << 30).contains(n))
                .ok_or_else(|| self.invalid(n, field, "bytes, between 16384 and 1073741824")),
        };
        let max_streams = match &raw.max_streams_per_connection {
            None => d.limits.max_streams,
            Some(n) => u32::try_from(*n.get_ref())
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| {
                    self.invalid(
                        n,
                        "max_streams_per_connection",
                        "must be between 1 and 10000",
                    )
                })?,
        };
        let keep_alive = match &raw.keep_alive {
            Some(s) if s.get_ref() == "off" => None,
            other => Some(self.duration(
                other,
                "keep_alive",
                d.limits.keep_alive.unwrap_or(Duration::from_secs(15)),
            )?),
        };
        Ok(QuicSettings {
            enabled: raw.enabled.unwrap_or(d.enabled),
            max_connections_per_identity: self.count(
                &raw.max_connections_per_identity,
                "max_connections_per_identity",
                d.max_connections_per_identity,
            )?,
            limits: QuicLimits {
                max_streams,
                stream_window: window(&raw.stream_window, "stream_window", d.limits.stream_window)?,
                connection_window: window(
                    &raw.connection_window,
                    "connection_window",
                    d.limits.connection_window,
                )?,
                datagram_buffer: window(
                    &raw.datagram_buffer,
                    "datagram_buffer",
                    d.limits.datagram_buffer,
                )?,
                idle_timeout: self.duration(
                    &raw.idle_timeout,
                    "idle_timeout",
                    d.limits.idle_timeout,
                )?,
                keep_alive,
            },
        })
    }

    fn count(
        &self,
        raw: &Option<Spanned<i64>>,
        field: &'static str,
        default: NonZeroUsize,
    ) -> Result<NonZeroUsize, ConfigError> {
        match raw {
            None => Ok(default),
            Some(n) => self.between_1_and(n, 1_000_000, field, ""),
        }
    }

    /// `n`, which must lie between 1 and `max`; else an error that says so, then `hint`.
    fn between_1_and(
        &self,
        n: &Spanned<i64>,
        max: usize,
        field: &'static str,
        hint: &str,
    ) -> Result<NonZeroUsize, ConfigError> {
        usize::try_from(*n.get_ref())
            .ok()
            .and_then(NonZeroUsize::new)
            .filter(|n| n.get() <= max)
            .ok_or_else(|| self.invalid(n, field, format!("must be between 1 and {max}{hint}")))
    }

    /// The certificates of every file `client_ca` names (at `at`), at least one file.
    fn client_ca(
        &self,
        files: Vec<String>,
        at: Location,
    ) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
        if files.is_empty() {
            return Err(ConfigError::Invalid {
                at,
                field: "client_ca",
                message: "name at least one CA file, or leave client_ca out (then no tunnels)"
                    .into(),
            });
        }
        let mut certs = Vec::new();
        for file in files {
            certs.extend(tp_net::pem::load_certs(&self.path(&file)).map_err(|error| {
                ConfigError::Pem {
                    at: at.clone(),
                    error,
                }
            })?);
        }
        Ok(certs)
    }

    fn certs(&self, raw: &Spanned<String>) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
        tp_net::pem::load_certs(&self.path(raw.get_ref())).map_err(|error| ConfigError::Pem {
            at: self.at(raw),
            error,
        })
    }
}

impl Config {
    /// Reads and converts the config file at `path`, loading every file it names.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::from_toml(&text, path)
    }

    /// Converts config text; `path` locates errors and anchors relative paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let src = Source { path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            at: Location::at(path.to_owned(), text, e.span().map_or(0, |s| s.start)),
            message: e.message().to_owned(),
        })?;

        let listen: SocketAddr = raw.listen.get_ref().parse().map_err(|_| {
            src.invalid(
                &raw.listen,
                "listen",
                "expected an address like \"0.0.0.0:443\" or \"[::]:443\"",
            )
        })?;

        let one_per_core = " (leave it out for one per core)";
        let workers = (raw.workers.as_ref())
            .map(|n| src.between_1_and(n, MAX_WORKERS, "workers", one_per_core))
            .transpose()?;

        let cert_chain = src.certs(&raw.tls.cert)?;
        let key_path = src.path(raw.tls.key.get_ref());
        let key = tp_net::pem::load_key(&key_path).map_err(|error| ConfigError::Pem {
            at: src.at(&raw.tls.key),
            error,
        })?;
        let (ca_at, client_ca) = match raw.tls.client_ca {
            // Nothing needs it: no tunnels, and no route asks for a client certificate.
            None => (None, Vec::new()),
            Some(files) => {
                let at = src.at(&files);
                (
                    Some(at.clone()),
                    src.client_ca(files.into_inner().into_vec(), at)?,
                )
            }
        };
        let revoked = match &raw.tls.revoked {
            None => RevocationList::default(),
            Some(file) => RevocationList::load(&src.path(file.get_ref())).map_err(|error| {
                ConfigError::Revocation {
                    at: src.at(file),
                    error,
                }
            })?,
        };
        // The verifier checks the presented chain, which need not include the root:
        // a revoked trust anchor must be removed from client_ca, not listed.
        if let (Some(ca), Some(ca_at)) = (client_ca.iter().find(|ca| revoked.is_revoked(ca)), ca_at)
        {
            let serial = crate::pki::serial_hex(ca).unwrap_or_else(|_| "?".into());
            return Err(ConfigError::Invalid {
                at: ca_at,
                field: "client_ca",
                message: format!(
                    "the CA certificate with serial {serial} is on the revocation list; \
                     remove it from client_ca instead of trusting and revoking it"
                ),
            });
        }

        let policy_path = src.path(raw.policy.get_ref());
        let policy_text =
            std::fs::read_to_string(&policy_path).map_err(|error| ConfigError::PolicyRead {
                at: src.at(&raw.policy),
                path: policy_path.clone(),
                error,
            })?;
        let policy = Policy::from_toml(&policy_text, &policy_path.display().to_string())?;

        let limits = src.limits(&raw.limits)?;
        let quic = src.quic(&raw.quic)?;
        let reverse = src.reverse(&raw.reverse)?;
        let website = src.website(&raw.website)?;
        let passthrough = src.passthrough(&raw.passthrough)?;
        // Passthrough routes are tried before the tunnel: one covering the
        // tunnel's own name would hand tp clients (and their certificates) to
        // its backend.
        let own = crate::website::certs::dns_names(&cert_chain[0]).unwrap_or_default();
        for (route, raw_route) in passthrough.iter().zip(&raw.passthrough) {
            if let Some(name) = own.iter().find(|n| {
                route
                    .names
                    .iter()
                    .any(|p| crate::website::certs::covers(p, n) || p == *n)
            }) {
                return Err(src.invalid(
                    &raw_route.names,
                    "names",
                    format!(
                        "covers {name}, the name of [tls] cert: tp clients would be passed through"
                    ),
                ));
            }
        }
        let signal = src.signal(&raw.signal)?;
        let terminate = src.terminate(&raw.terminate, listen, !client_ca.is_empty())?;
        let stealth = src.stealth(&raw.stealth, !client_ca.is_empty())?;
        let config = Config {
            listen,
            workers,
            tls: TlsMaterial {
                cert_chain,
                key,
                client_ca,
                revoked,
            },
            policy,
            policy_path,
            limits,
            quic,
            reverse,
            website,
            passthrough,
            signal,
            terminate,
            stealth,
        };
        // Building the TLS config checks that the key fits the certificate and the CAs are usable.
        crate::tls::server_config(&config.tls).map_err(|e| ConfigError::Tls(e.to_string()))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests;
