//! The client's settings, from three layers: the config file, then environment
//! variables, then command-line flags (each overrides the one before).
//!
//! Resolution is pure: [`env_layer`] reads variables through a lookup function and
//! [`resolve`] merges layers, so tests never touch the process environment. Only
//! [`load`] reads a file.

mod file;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::ServerName;
use tp_proto::Host;

use crate::addr::ServerAddr;
use crate::transport::Transport;
use tp_net::duration::parse_timeout;

pub use file::parse_file;

/// How long dialing the server may take when nothing sets `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Environment variable naming the config file.
pub const ENV_CONFIG: &str = "TP_CONFIG";

/// The file under the cache directory where `auto` remembers servers whose QUIC
/// did not answer.
pub const CACHE_FILE: &str = "transport";

/// One setting and the three ways to give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Key in the config file.
    pub key: &'static str,
    /// Environment variable.
    pub env: &'static str,
    /// Command-line flag.
    pub flag: &'static str,
}

/// Every setting, in the order the help text lists them.
pub const SETTINGS: [Setting; 9] = [
    SERVER,
    SERVER_NAME,
    CERT,
    KEY,
    CA,
    PEER_CA,
    CONNECT_TIMEOUT,
    TRANSPORT,
    STEALTH,
];

const SERVER: Setting = setting("server", "TP_SERVER", "--server");
const SERVER_NAME: Setting = setting("server_name", "TP_SERVER_NAME", "--server-name");
const CERT: Setting = setting("cert", "TP_CERT", "--cert");
const KEY: Setting = setting("key", "TP_KEY", "--key");
const CA: Setting = setting("ca", "TP_CA", "--ca");
const PEER_CA: Setting = setting("peer_ca", "TP_PEER_CA", "--peer-ca");
const CONNECT_TIMEOUT: Setting =
    setting("connect_timeout", "TP_CONNECT_TIMEOUT", "--connect-timeout");
const TRANSPORT: Setting = setting("transport", "TP_TRANSPORT", "--transport");
const STEALTH: Setting = setting("stealth", "TP_STEALTH", "--stealth");

const fn setting(key: &'static str, env: &'static str, flag: &'static str) -> Setting {
    Setting { key, env, flag }
}

/// Why the settings could not be put together.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read (a missing default file is not an error).
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The config file is not valid TOML, has an unknown key, or a bad value.
    #[error("{}:{line}:{column}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column of the offending text.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// An environment variable holds a bad value.
    #[error("{var}: {message}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong with its value.
        message: String,
    },
    /// Stealth mode with `transport = quic`: QUIC shows ALPN `tp/1` to anyone
    /// watching.
    #[error(
        "stealth mode runs over TLS/TCP only (QUIC would show ALPN tp/1 in the clear): \
         drop transport quic, or stealth"
    )]
    StealthOverQuic,
    /// The TLS server name is not a valid DNS name or IP address.
    #[error("server name {0:?} is not a valid DNS name or IP address")]
    ServerName(String),
    /// Required settings are missing.
    #[error("{}", missing_message(.missing, .config_file.as_deref()))]
    Missing {
        /// The settings nobody gave.
        missing: Vec<Setting>,
        /// The config file consulted (or that would have been), for the message.
        config_file: Option<PathBuf>,
    },
}

fn missing_message(missing: &[Setting], config_file: Option<&Path>) -> String {
    let file = config_file.map_or_else(
        || "the config file (--config or TP_CONFIG)".to_owned(),
        |p| p.display().to_string(),
    );
    let mut out = String::from("missing required settings:");
    for s in missing {
        out.push_str(&format!(
            "\n  {}: set `{}` in {file}, or {}, or {}",
            s.key, s.key, s.env, s.flag
        ));
    }
    out
}

/// Settings from one source; `None` means "this source says nothing".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    /// The tp server to dial.
    pub server: Option<ServerAddr>,
    /// The name to verify the server's certificate against.
    pub server_name: Option<String>,
    /// The client certificate chain (PEM, leaf first).
    pub cert: Option<PathBuf>,
    /// The client private key (PEM).
    pub key: Option<PathBuf>,
    /// The CA certificate(s) the server's certificate must chain to (PEM).
    pub ca: Option<PathBuf>,
    /// The CA certificate(s) other clients' certificates must chain to, for
    /// end-to-end TLS with a service (PEM).
    pub peer_ca: Option<PathBuf>,
    /// Deadline for reaching the server and completing the TLS handshake.
    pub connect_timeout: Option<Duration>,
    /// QUIC, TLS/TCP, or QUIC with a TLS/TCP fallback.
    pub transport: Option<Transport>,
    /// Look like a browser visiting the server's website (TLS/TCP only).
    pub stealth: Option<bool>,
}

impl Layer {
    /// This layer with every field `over` sets replaced.
    fn overridden_by(self, over: Layer) -> Layer {
        Layer {
            server: over.server.or(self.server),
            server_name: over.server_name.or(self.server_name),
            cert: over.cert.or(self.cert),
            key: over.key.or(self.key),
            ca: over.ca.or(self.ca),
            peer_ca: over.peer_ca.or(self.peer_ca),
            connect_timeout: over.connect_timeout.or(self.connect_timeout),
            transport: over.transport.or(self.transport),
            stealth: over.stealth.or(self.stealth),
        }
    }
}

/// Everything the client needs to reach the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The tp server to dial.
    pub server: ServerAddr,
    /// The name the server's certificate must be valid for.
    pub server_name: ServerName<'static>,
    /// The client certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// The client private key (PEM).
    pub key: PathBuf,
    /// The CA certificate(s) the server's certificate must chain to (PEM).
    pub ca: PathBuf,
    /// The CA certificate(s) the other end of an end-to-end service tunnel
    /// must chain to (PEM): `peer_ca`, else `ca`.
    pub peer_ca: PathBuf,
    /// Deadline for reaching the server and completing the TLS handshake.
    pub connect_timeout: Duration,
    /// QUIC, TLS/TCP, or QUIC with a TLS/TCP fallback; always TLS/TCP in
    /// stealth mode.
    pub transport: Transport,
    /// Stealth mode: the TLS handshake offers a browser's ALPN ids instead of
    /// `tp/1`, so nothing in the clear tells this client from a browser
    /// visiting the server's website (`docs/stealth.md`).
    pub stealth: bool,
    /// Where `auto` remembers servers whose QUIC did not answer, shared by
    /// every `tp` process; `None` keeps that memory in the process only.
    pub cache_file: Option<PathBuf>,
}

/// Which config file to read, and whether the user named it (then it must exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigPath {
    /// The file.
    pub path: PathBuf,
    /// Named by `--config` or `TP_CONFIG` rather than the default location.
    pub explicit: bool,
}

/// Reads a variable through `get`, treating an empty value as unset.
fn var(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name).filter(|v| !v.is_empty())
}

/// The home directory from `HOME`, if set.
pub fn home_dir(get: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    var(get, "HOME").map(PathBuf::from)
}

/// The config file to read: `--config`, else `TP_CONFIG`, else
/// `$XDG_CONFIG_HOME/tp/config.toml`, else `~/.config/tp/config.toml`.
pub fn config_path(
    flag: Option<&Path>,
    get: &dyn Fn(&str) -> Option<String>,
) -> Option<ConfigPath> {
    let home = home_dir(get);
    if let Some(path) = flag {
        let path = expand_tilde(path, home.as_deref());
        return Some(ConfigPath {
            path,
            explicit: true,
        });
    }
    if let Some(path) = var(get, ENV_CONFIG) {
        let path = expand_tilde(Path::new(&path), home.as_deref());
        return Some(ConfigPath {
            path,
            explicit: true,
        });
    }
    let base = var(get, "XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home.map(|h| h.join(".config")))?;
    Some(ConfigPath {
        path: base.join("tp").join("config.toml"),
        explicit: false,
    })
}

/// The transport cache file: `$XDG_CACHE_HOME/tp/transport`, else
/// `~/.cache/tp/transport`; `None` without a home directory.
pub fn cache_path(get: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let base = var(get, "XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home_dir(get).map(|h| h.join(".cache")))?;
    Some(base.join("tp").join(CACHE_FILE))
}

/// Replaces a leading `~/` (or a lone `~`) with `home`. Without a home directory
/// the path is left as written.
pub fn expand_tilde(path: &Path, home: Option<&Path>) -> PathBuf {
    match (home, path.strip_prefix("~")) {
        (Some(home), Ok(rest)) => home.join(rest),
        _ => path.to_owned(),
    }
}

/// The settings the environment gives: `TP_SERVER`, `TP_SERVER_NAME`, `TP_CERT`,
/// `TP_KEY`, `TP_CA`, `TP_PEER_CA`, `TP_CONNECT_TIMEOUT`, `TP_TRANSPORT`,
/// `TP_STEALTH` (`1`/`true` or `0`/`false`). Empty variables count as unset.
pub fn env_layer(get: &dyn Fn(&str) -> Option<String>) -> Result<Layer, ConfigError> {
    let home = home_dir(get);
    let path = |s: &Setting| var(get, s.env).map(|v| expand_tilde(Path::new(&v), home.as_deref()));
    let bad = |s: &Setting, message: String| ConfigError::Env {
        var: s.env,
        message,
    };
    Ok(Layer {
        server: var(get, SERVER.env)
            .map(|v| ServerAddr::parse(&v))
            .transpose()
            .map_err(|e| bad(&SERVER, e.to_string()))?,
        server_name: var(get, SERVER_NAME.env),
        cert: path(&CERT),
        key: path(&KEY),
        ca: path(&CA),
        peer_ca: path(&PEER_CA),
        connect_timeout: var(get, CONNECT_TIMEOUT.env)
            .map(|v| parse_timeout(&v))
            .transpose()
            .map_err(|e| bad(&CONNECT_TIMEOUT, e.to_string()))?,
        transport: var(get, TRANSPORT.env)
            .map(|v| Transport::parse(&v))
            .transpose()
            .map_err(|e| bad(&TRANSPORT, e.to_string()))?,
        stealth: var(get, STEALTH.env)
            .map(|v| parse_switch(&v))
            .transpose()
            .map_err(|e| bad(&STEALTH, e))?,
    })
}

/// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`, any case.
fn parse_switch(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "{value:?} is not a switch: expected 1 or 0 (true or false)"
        )),
    }
}

/// Merges the layers (file, then environment, then flags) and checks that every
/// required setting is present. `config_file` only feeds the error message.
pub fn resolve(
    file: Layer,
    env: Layer,
    flags: Layer,
    config_file: Option<&Path>,
) -> Result<Settings, ConfigError> {
    let merged = file.overridden_by(env).overridden_by(flags);
    let mut missing = Vec::new();
    if merged.server.is_none() {
        missing.push(SERVER);
    }
    if merged.cert.is_none() {
        missing.push(CERT);
    }
    if merged.key.is_none() {
        missing.push(KEY);
    }
    if merged.ca.is_none() {
        missing.push(CA);
    }
    let (Some(server), Some(cert), Some(key), Some(ca)) =
        (merged.server, merged.cert, merged.key, merged.ca)
    else {
        return Err(ConfigError::Missing {
            missing,
            config_file: config_file.map(Path::to_owned),
        });
    };
    let server_name = match merged.server_name {
        Some(name) => {
            ServerName::try_from(name.clone()).map_err(|_| ConfigError::ServerName(name))?
        }
        None => default_server_name(&server.host)?,
    };
    let stealth = merged.stealth.unwrap_or(false);
    let transport = match (stealth, merged.transport) {
        (true, Some(Transport::Quic)) => return Err(ConfigError::StealthOverQuic),
        (true, _) => Transport::Tcp,
        (false, transport) => transport.unwrap_or_default(),
    };
    Ok(Settings {
        server,
        server_name,
        cert,
        key,
        peer_ca: merged.peer_ca.unwrap_or_else(|| ca.clone()),
        ca,
        connect_timeout: merged.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        transport,
        stealth,
        cache_file: None,
    })
}

/// The server's own host as a TLS name: a DNS name, or an IP address.
fn default_server_name(host: &Host) -> Result<ServerName<'static>, ConfigError> {
    match host {
        Host::Ip(ip) => Ok(ServerName::IpAddress((*ip).into())),
        Host::Name(name) => {
            ServerName::try_from(name.clone()).map_err(|_| ConfigError::ServerName(name.clone()))
        }
    }
}

/// Reads the config file (if any), the environment through `get`, and merges them
/// under `flags`. A missing default config file is fine; a missing file named by
/// `--config` or `TP_CONFIG` is an error. The transport cache file is the default
/// one ([`cache_path`]).
pub fn load(
    flags: Layer,
    config_flag: Option<&Path>,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let config = config_path(config_flag, get);
    let home = home_dir(get);
    let file = match &config {
        None => Layer::default(),
        Some(ConfigPath { path, explicit }) => match std::fs::read_to_string(path) {
            Ok(text) => parse_file(&text, path, home.as_deref())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Layer::default(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.clone(),
                    source,
                });
            }
        },
    };
    let env = env_layer(get)?;
    let settings = resolve(file, env, flags, config.as_ref().map(|c| c.path.as_path()))?;
    Ok(Settings {
        cache_file: cache_path(get),
        ..settings
    })
}

#[cfg(test)]
mod tests;
