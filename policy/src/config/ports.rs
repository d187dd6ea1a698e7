//! `ports` and `public_ports` entries: an integer, or a string `"a-b"`, `"a"` or `"*"`,
//! each turned into an inclusive range within 1..=65535.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

use super::{Refusal, refuse};
use crate::error::PolicyProblem;

/// A list of `ports` or `public_ports` entries.
pub(super) type RawPorts = Spanned<Vec<Spanned<RawPort>>>;

/// A `ports` or `public_ports` entry: an integer, or a string `"a-b"`, `"a"` or `"*"`.
#[derive(Debug)]
pub(super) enum RawPort {
    Number(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawPort, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = RawPort;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a port number, a "low-high" range, or "*""#)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPort, E> {
                Ok(RawPort::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawPort, E> {
                Ok(RawPort::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPort, E> {
                Ok(RawPort::Text(v.to_owned()))
            }
        }
        d.deserialize_any(PortVisitor)
    }
}

/// The entries of `ports` or, if `public`, of `public_ports`.
pub(super) fn port_list(
    raw: RawPorts,
    name: &str,
    public: bool,
) -> Result<Vec<(u16, u16)>, Refusal> {
    let mut ports = Vec::new();
    for entry in raw.into_inner() {
        match port_range(entry.get_ref()) {
            Ok(r) => ports.push(r),
            Err(reason) => {
                let rule = name.to_owned();
                let value = match entry.get_ref() {
                    RawPort::Number(n) => n.to_string(),
                    RawPort::Text(t) => format!("{t:?}"),
                };
                let problem = if public {
                    PolicyProblem::BadPublicPort {
                        rule,
                        value,
                        reason,
                    }
                } else {
                    PolicyProblem::BadPort {
                        rule,
                        value,
                        reason,
                    }
                };
                return refuse(entry.span(), problem);
            }
        }
    }
    Ok(ports)
}

/// A port or port range, inclusive, within 1..=65535.
fn port_range(raw: &RawPort) -> Result<(u16, u16), String> {
    let port = |n: i64| -> Result<u16, String> {
        u16::try_from(n)
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| "ports are 1 to 65535".to_owned())
    };
    let text_port = |s: &str| -> Result<u16, String> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                r#"{s:?} is not a port; write 22, "8000-8100" or "*""#
            ));
        }
        // At most five digits, so this fits.
        port(s.parse::<i64>().map_err(|e| e.to_string())?)
    };
    match raw {
        RawPort::Number(n) => port(*n).map(|p| (p, p)),
        RawPort::Text(t) if t == "*" => Ok((1, u16::MAX)),
        RawPort::Text(t) => match t.split_once('-') {
            None => text_port(t).map(|p| (p, p)),
            Some((lo, hi)) => {
                let (lo, hi) = (text_port(lo)?, text_port(hi)?);
                if lo > hi {
                    return Err(format!(
                        "the range is reversed; did you mean \"{hi}-{lo}\"?"
                    ));
                }
                Ok((lo, hi))
            }
        },
    }
}
