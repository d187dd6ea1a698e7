//! Which transport carries tunnels to the server: QUIC (UDP), TLS over TCP, or
//! `auto` (QUIC first, TLS/TCP when UDP gets no answer).

use std::fmt;
use std::str::FromStr;

/// The `transport` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Transport {
    /// Prefer QUIC; fall back to TLS/TCP quickly when UDP gets no answer, and
    /// remember that for a while.
    #[default]
    Auto,
    /// QUIC only: many tunnels share one connection.
    Quic,
    /// TLS over TCP only: one connection per tunnel.
    Tcp,
}

/// An unknown `transport` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a transport: expected auto, quic or tcp")]
pub struct TransportError(pub String);

impl Transport {
    /// The spelling in flags, environment and the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Auto => "auto",
            Transport::Quic => "quic",
            Transport::Tcp => "tcp",
        }
    }

    /// Parses `auto`, `quic` or `tcp` (for clap's `value_parser`).
    pub fn parse(s: &str) -> Result<Transport, TransportError> {
        s.parse()
    }
}

impl FromStr for Transport {
    type Err = TransportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Transport::Auto),
            "quic" => Ok(Transport::Quic),
            "tcp" => Ok(Transport::Tcp),
            other => Err(TransportError(other.to_owned())),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transport an open tunnel actually runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A stream of a QUIC connection.
    Quic,
    /// Its own TLS connection over TCP.
    Tcp,
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Via::Quic => "quic",
            Via::Tcp => "tcp",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_spellings_only() {
        for t in [Transport::Auto, Transport::Quic, Transport::Tcp] {
            assert_eq!(Transport::parse(t.as_str()), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
        }
        let err = Transport::parse("udp").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"udp\" is not a transport: expected auto, quic or tcp"
        );
        assert!(Transport::parse("QUIC").is_err());
        assert!(Transport::parse("").is_err());
        assert_eq!(Transport::default(), Transport::Auto);
    }
}
