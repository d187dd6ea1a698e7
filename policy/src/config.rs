//! Reading the policy file: TOML into `Raw*` structs, then `TryFrom` into a typed
//! [`Policy`]. Every refusal points at the value it concerns.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use tp_proto::Proto;

use crate::error::{Location, PolicyError, PolicyProblem};
use crate::pattern::{IdPattern, ServicePattern, Target};
use crate::rules::{Group, Policy, Rule, Who};

use self::ports::{RawPorts, port_list};

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

/// A list of strings, each with its place in the file.
type RawList = Spanned<Vec<Spanned<String>>>;

/// One `[[rule]]` as written. Which keys must come together (`connect` with `ports`)
/// and that at least one grant is given is checked in [`rule`], with a message that
/// says so.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    who: RawList,
    #[serde(default)]
    connect: Option<RawList>,
    #[serde(default)]
    ports: Option<RawPorts>,
    #[serde(default)]
    proto: Option<Spanned<Vec<RawProto>>>,
    #[serde(default)]
    listen: Option<RawList>,
    #[serde(default)]
    public_ports: Option<RawPorts>,
    #[serde(default)]
    services: Option<RawList>,
    #[serde(default)]
    routes: Option<RawList>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawProto {
    Tcp,
    Udp,
}

/// A refusal found while converting, before it is given a line and column.
#[derive(Debug)]
pub(crate) struct Refusal {
    span: Range<usize>,
    problem: PolicyProblem,
}

pub(super) fn refuse<T>(span: Range<usize>, problem: PolicyProblem) -> Result<T, Refusal> {
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
    let name = raw.name.get_ref().clone();
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
    let empties = [
        ("connect", empty_at(&raw.connect)),
        ("ports", empty_at(&raw.ports)),
        ("proto", empty_at(&raw.proto)),
        ("listen", empty_at(&raw.listen)),
        ("public_ports", empty_at(&raw.public_ports)),
        ("services", empty_at(&raw.services)),
        ("routes", empty_at(&raw.routes)),
    ];
    if let Some((field, span)) = empties.into_iter().find_map(|(f, s)| Some((f, s?))) {
        return refuse(span, empty(field));
    }
    grants(&raw)?;

    let who = who(raw.who, &name, groups)?;
    let (targets, ports, protos) = match (raw.connect, raw.ports) {
        (Some(connect), Some(ports)) => {
            let protos = match raw.proto {
                None => vec![Proto::Tcp],
                Some(p) => p
                    .into_inner()
                    .into_iter()
                    .map(|p| match p {
                        RawProto::Tcp => Proto::Tcp,
                        RawProto::Udp => Proto::Udp,
                    })
                    .collect(),
            };
            (
                targets(connect, &name)?,
                port_list(ports, &name, false)?,
                protos,
            )
        }
        // `grants` refused every other combination that has either key.
        _ => (Vec::new(), Vec::new(), Vec::new()),
    };
    let listen = name_patterns(raw.listen, &name, "service", |rule, pattern, reason| {
        PolicyProblem::BadListenPattern {
            rule,
            pattern,
            reason,
        }
    })?;
    let public_ports = match raw.public_ports {
        Some(list) => port_list(list, &name, true)?,
        None => Vec::new(),
    };
    let services = name_patterns(raw.services, &name, "service", |rule, pattern, reason| {
        PolicyProblem::BadServicePattern {
            rule,
            pattern,
            reason,
        }
    })?;
    let routes = name_patterns(raw.routes, &name, "route", |rule, pattern, reason| {
        PolicyProblem::BadRoutePattern {
            rule,
            pattern,
            reason,
        }
    })?;

    Ok(Rule {
        name,
        who,
        targets,
        ports,
        protos,
        listen,
        public_ports,
        services,
        routes,
    })
}

/// Where `list` is, if it is given and empty.
fn empty_at<T>(list: &Option<Spanned<Vec<T>>>) -> Option<Range<usize>> {
    list.as_ref()
        .filter(|l| l.get_ref().is_empty())
        .map(Spanned::span)
}

/// Refuses a rule whose keys do not make a grant: `connect` and `ports` come together,
/// `proto` only with them, and at least one of `connect`, `listen`, `public_ports`,
/// `services` and `routes` is given.
fn grants(raw: &RawRule) -> Result<(), Refusal> {
    let rule = raw.name.get_ref().clone();
    match (&raw.connect, &raw.ports) {
        (Some(connect), None) => {
            return refuse(connect.span(), PolicyProblem::ConnectWithoutPorts { rule });
        }
        (None, Some(ports)) => {
            return refuse(ports.span(), PolicyProblem::PortsWithoutConnect { rule });
        }
        _ => {}
    }
    if let (None, Some(proto)) = (&raw.connect, &raw.proto) {
        return refuse(proto.span(), PolicyProblem::ProtoWithoutConnect { rule });
    }
    if raw.connect.is_none()
        && raw.listen.is_none()
        && raw.public_ports.is_none()
        && raw.services.is_none()
        && raw.routes.is_none()
    {
        return refuse(raw.name.span(), PolicyProblem::NoGrant { rule });
    }
    Ok(())
}

fn who(raw: RawList, name: &str, groups: &HashMap<&str, usize>) -> Result<Vec<Who>, Refusal> {
    let mut who = Vec::new();
    for entry in raw.into_inner() {
        let span = entry.span();
        let entry = entry.into_inner();
        if entry == "*" {
            who.push(Who::Anyone);
        } else if let Some(group) = entry.strip_prefix("group:") {
            match groups.get(group) {
                Some(&i) => who.push(Who::Group(i)),
                None => {
                    let problem = PolicyProblem::UnknownGroup {
                        rule: name.to_owned(),
                        group: group.to_owned(),
                    };
                    return refuse(span, problem);
                }
            }
        } else {
            match IdPattern::parse(&entry) {
                Ok(p) => who.push(Who::Id(p)),
                Err(reason) => {
                    let problem = PolicyProblem::BadIdentityPattern {
                        owner: format!("rule {name:?}"),
                        pattern: entry,
                        reason,
                    };
                    return refuse(span, problem);
                }
            }
        }
    }
    Ok(who)
}

fn targets(raw: RawList, name: &str) -> Result<Vec<Target>, Refusal> {
    let mut targets = Vec::new();
    for entry in raw.into_inner() {
        match Target::parse(entry.get_ref()) {
            Ok(t) => targets.push(t),
            Err(reason) => {
                let span = entry.span();
                let problem = PolicyProblem::BadTarget {
                    rule: name.to_owned(),
                    target: entry.into_inner(),
                    reason,
                };
                return refuse(span, problem);
            }
        }
    }
    Ok(targets)
}

/// The entries of `listen`, `services` or `routes` (names of `kind`), refused with
/// `bad(rule, pattern, reason)`; none if the key is absent.
fn name_patterns(
    raw: Option<RawList>,
    name: &str,
    kind: &str,
    bad: fn(String, String, String) -> PolicyProblem,
) -> Result<Vec<ServicePattern>, Refusal> {
    let mut patterns = Vec::new();
    for entry in raw.map(Spanned::into_inner).unwrap_or_default() {
        match ServicePattern::parse_named(entry.get_ref(), kind) {
            Ok(p) => patterns.push(p),
            Err(reason) => {
                let span = entry.span();
                return refuse(span, bad(name.to_owned(), entry.into_inner(), reason));
            }
        }
    }
    Ok(patterns)
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

mod ports;

#[cfg(test)]
mod tests;
