//! Reading the policy file: TOML into `Raw*` structs, then `TryFrom` into a typed
//! [`Policy`]. Every refusal points at the value it concerns.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;
use tp_proto::Proto;

use crate::error::{Location, PolicyError, PolicyProblem};
use crate::pattern::{IdPattern, Target};
use crate::rules::{Group, Policy, Rule, Who};

/// The longest rule or group name.
const MAX_NAME_LEN: usize = 64;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    #[serde(default)]
    groups: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

/// One `[[rule]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    who: Spanned<Vec<Spanned<String>>>,
    connect: Spanned<Vec<Spanned<String>>>,
    ports: Spanned<Vec<Spanned<RawPort>>>,
    #[serde(default)]
    proto: Option<Spanned<Vec<RawProto>>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawProto {
    Tcp,
    Udp,
}

/// A `ports` entry: an integer, or a string `"a-b"`, `"a"` or `"*"`.
#[derive(Debug)]
enum RawPort {
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

/// A refusal found while converting, before it is given a line and column.
#[derive(Debug)]
pub(crate) struct Refusal {
    span: Range<usize>,
    problem: PolicyProblem,
}

fn refuse<T>(span: Range<usize>, problem: PolicyProblem) -> Result<T, Refusal> {
    Err(Refusal { span, problem })
}

/// Parses and converts a policy file.
pub(crate) fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
    let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError::Syntax {
        at: Location::of(text, origin, e.span().map_or(0, |s| s.start)),
        message: e.message().trim().to_owned(),
    })?;
    Policy::try_from(raw).map_err(|r| PolicyError::Invalid {
        at: Location::of(text, origin, r.span.start),
        problem: r.problem,
    })
}

impl TryFrom<RawPolicy> for Policy {
    type Error = Refusal;

    fn try_from(raw: RawPolicy) -> Result<Policy, Refusal> {
        // `[groups]` comes back sorted by name; restore file order from the spans.
        let mut raw_groups: Vec<_> = raw.groups.into_iter().collect();
        raw_groups.sort_by_key(|(_, members)| members.span().start);
        let mut groups = Vec::with_capacity(raw_groups.len());
        for (name, members) in raw_groups {
            groups.push(group(name, members)?);
        }
        let index: HashMap<&str, usize> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.name.as_str(), i))
            .collect();
        let mut rules: Vec<Rule> = Vec::with_capacity(raw.rule.len());
        let mut names = HashSet::new();
        for raw_rule in raw.rule {
            let name_span = raw_rule.get_ref().name.span();
            let rule = rule(raw_rule, &index)?;
            // The second use of a name is the one reported.
            if !names.insert(rule.name.clone()) {
                return refuse(name_span, PolicyProblem::DuplicateRule { name: rule.name });
            }
            rules.push(rule);
        }
        Ok(Policy { groups, rules })
    }
}

fn group(name: String, members: Spanned<Vec<Spanned<String>>>) -> Result<Group, Refusal> {
    let span = members.span();
    if !valid_name(&name) {
        return refuse(
            span,
            PolicyProblem::BadName {
                what: "group",
                name,
            },
        );
    }
    let mut patterns = Vec::new();
    for member in members.into_inner() {
        let bad = |reason: String| PolicyProblem::BadIdentityPattern {
            owner: format!("group {name:?}"),
            pattern: member.get_ref().clone(),
            reason,
        };
        if member.get_ref().starts_with("group:") {
            return refuse(member.span(), bad("groups cannot contain groups".into()));
        }
        match IdPattern::parse(member.get_ref()) {
            Ok(p) => patterns.push(p),
            Err(reason) => return refuse(member.span(), bad(reason)),
        }
    }
    Ok(Group {
        name,
        members: patterns,
    })
}

fn rule(raw: Spanned<RawRule>, groups: &HashMap<&str, usize>) -> Result<Rule, Refusal> {
    let raw = raw.into_inner();
    let name_span = raw.name.span();
    let name = raw.name.into_inner();
    if !valid_name(&name) {
        return refuse(name_span, PolicyProblem::BadName { what: "rule", name });
    }
    let empty = |field| PolicyProblem::EmptyList {
        rule: name.clone(),
        field,
    };
    if raw.who.get_ref().is_empty() {
        return refuse(raw.who.span(), empty("who"));
    }
    if raw.connect.get_ref().is_empty() {
        return refuse(raw.connect.span(), empty("connect"));
    }
    if raw.ports.get_ref().is_empty() {
        return refuse(raw.ports.span(), empty("ports"));
    }
    let protos = match raw.proto {
        None => vec![Proto::Tcp],
        Some(p) if p.get_ref().is_empty() => return refuse(p.span(), empty("proto")),
        Some(p) => p
            .into_inner()
            .into_iter()
            .map(|p| match p {
                RawProto::Tcp => Proto::Tcp,
                RawProto::Udp => Proto::Udp,
            })
            .collect(),
    };

    let mut who = Vec::new();
    for entry in raw.who.into_inner() {
        let span = entry.span();
        let entry = entry.into_inner();
        if entry == "*" {
            who.push(Who::Anyone);
        } else if let Some(group) = entry.strip_prefix("group:") {
            match groups.get(group) {
                Some(&i) => who.push(Who::Group(i)),
                None => {
                    let group = group.to_owned();
                    return refuse(span, PolicyProblem::UnknownGroup { rule: name, group });
                }
            }
        } else {
            match IdPattern::parse(&entry) {
                Ok(p) => who.push(Who::Id(p)),
                Err(reason) => {
                    let owner = format!("rule {name:?}");
                    let problem = PolicyProblem::BadIdentityPattern {
                        owner,
                        pattern: entry,
                        reason,
                    };
                    return refuse(span, problem);
                }
            }
        }
    }

    let mut targets = Vec::new();
    for entry in raw.connect.into_inner() {
        match Target::parse(entry.get_ref()) {
            Ok(t) => targets.push(t),
            Err(reason) => {
                let span = entry.span();
                let target = entry.into_inner();
                return refuse(
                    span,
                    PolicyProblem::BadTarget {
                        rule: name,
                        target,
                        reason,
                    },
                );
            }
        }
    }

    let mut ports = Vec::new();
    for entry in raw.ports.into_inner() {
        match port_range(entry.get_ref()) {
            Ok(r) => ports.push(r),
            Err(reason) => {
                let value = match entry.get_ref() {
                    RawPort::Number(n) => n.to_string(),
                    RawPort::Text(t) => format!("{t:?}"),
                };
                return refuse(
                    entry.span(),
                    PolicyProblem::BadPort {
                        rule: name,
                        value,
                        reason,
                    },
                );
            }
        }
    }

    Ok(Rule {
        name,
        who,
        targets,
        ports,
        protos,
    })
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

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests;
