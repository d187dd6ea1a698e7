//! The server config file as written: serde structs with every field optional
//! where a default exists, spans kept for error locations.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Spanned<String>,
    pub(super) policy: Spanned<String>,
    #[serde(default)]
    pub(super) workers: Option<Spanned<i64>>,
    pub(super) tls: RawTls,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) quic: RawQuic,
    #[serde(default)]
    pub(super) reverse: RawReverse,
    #[serde(default)]
    pub(super) website: RawWebsite,
    #[serde(default)]
    pub(super) passthrough: Vec<RawPassthrough>,
    #[serde(default)]
    pub(super) signal: RawSignal,
    #[serde(default)]
    pub(super) terminate: Vec<RawTerminate>,
    #[serde(default)]
    pub(super) stealth: RawStealth,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: Spanned<String>,
    pub(super) key: Spanned<String>,
    #[serde(default)]
    pub(super) client_ca: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    pub(super) revoked: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) handshake_timeout: Option<Spanned<String>>,
    pub(super) hello_timeout: Option<Spanned<String>>,
    pub(super) connect_timeout: Option<Spanned<String>>,
    pub(super) idle_timeout: Option<Spanned<String>>,
    pub(super) udp_idle_timeout: Option<Spanned<String>>,
    pub(super) drain_timeout: Option<Spanned<String>>,
    pub(super) max_connections: Option<Spanned<i64>>,
    pub(super) max_handshakes_per_source: Option<Spanned<i64>>,
    pub(super) max_tunnels_per_identity: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuic {
    pub(super) enabled: Option<bool>,
    pub(super) max_streams_per_connection: Option<Spanned<i64>>,
    pub(super) max_connections_per_identity: Option<Spanned<i64>>,
    pub(super) stream_window: Option<Spanned<i64>>,
    pub(super) connection_window: Option<Spanned<i64>>,
    pub(super) datagram_buffer: Option<Spanned<i64>>,
    pub(super) idle_timeout: Option<Spanned<String>>,
    pub(super) keep_alive: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReverse {
    pub(super) public_address: Option<Spanned<String>>,
    pub(super) session_timeout: Option<Spanned<String>>,
    pub(super) heartbeat: Option<Spanned<String>>,
    pub(super) max_public_connections: Option<Spanned<i64>>,
    pub(super) max_public_connections_per_source: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebsite {
    #[serde(default)]
    pub(super) certs: Vec<RawSiteCert>,
    pub(super) backend: Option<Spanned<String>>,
    pub(super) h2_backend: Option<Spanned<String>>,
    pub(super) proxy_protocol: Option<bool>,
    pub(super) max_connections_per_source: Option<Spanned<i64>>,
    pub(super) idle_timeout: Option<Spanned<String>>,
    pub(super) page: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSiteCert {
    pub(super) cert: Spanned<String>,
    pub(super) key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPassthrough {
    pub(super) names: Spanned<Vec<String>>,
    pub(super) backend: Spanned<String>,
    pub(super) proxy_protocol: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSignal {
    pub(super) enabled: Option<bool>,
    pub(super) hosts: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) upstreams: std::collections::BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTerminate {
    pub(super) name: Option<Spanned<String>>,
    pub(super) names: Option<Spanned<Vec<String>>>,
    pub(super) backend: Spanned<String>,
    pub(super) proxy_protocol: Option<bool>,
    #[serde(default)]
    pub(super) alpn: Vec<String>,
    pub(super) listen: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) client_cert: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStealth {
    pub(super) names: Option<Spanned<Vec<String>>>,
}
