//! The server config file as written: serde structs with every field optional
//! where a default exists, spans kept for error locations.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Spanned<String>,
    pub(super) policy: Spanned<String>,
    pub(super) tls: RawTls,
    #[serde(default)]
    pub(super) limits: RawLimits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: Spanned<String>,
    pub(super) key: Spanned<String>,
    pub(super) client_ca: Spanned<OneOrMany>,
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
    pub(super) drain_timeout: Option<Spanned<String>>,
    pub(super) max_connections: Option<Spanned<i64>>,
    pub(super) max_handshakes_per_source: Option<Spanned<i64>>,
}
