//! Errors of loading a policy file, each with the place in the file it concerns.

use std::fmt;

/// A place in a policy file: `origin:line:column`, both counted from 1, columns in
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Where the text came from, as given to [`crate::Policy::from_toml`] (e.g. a path).
    pub origin: String,
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in characters.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` of `text`.
    pub(crate) fn of(text: &str, origin: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            origin: origin.to_owned(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.origin, self.line, self.column)
    }
}

/// Why a policy file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is not TOML, or not shaped like a policy: a syntax error, an unknown
    /// key, a value of the wrong type, or a missing required key.
    #[error("{at}: {message}")]
    Syntax {
        /// Where.
        at: Location,
        /// The parser's explanation.
        message: String,
    },
    /// The file is well-formed, but a value in it is not acceptable.
    #[error("{at}: {problem}")]
    Invalid {
        /// Where: the offending value, or the rule or group it belongs to.
        at: Location,
        /// What is wrong, naming the rule or group.
        problem: PolicyProblem,
    },
}

impl PolicyError {
    /// Where in the file the error is.
    pub fn location(&self) -> &Location {
        match self {
            PolicyError::Syntax { at, .. } | PolicyError::Invalid { at, .. } => at,
        }
    }
}

/// What is wrong with a well-formed policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyProblem {
    /// Two rules have the same name.
    #[error("duplicate rule name {name:?}: rule names must be unique")]
    DuplicateRule {
        /// The repeated name.
        name: String,
    },
    /// A rule or group name is empty, too long, or has characters other than ASCII
    /// letters, digits, `-`, `_` and `.`.
    #[error("invalid {what} name {name:?}: use 1 to 64 ASCII letters, digits, '-', '_' or '.'")]
    BadName {
        /// `"rule"` or `"group"`.
        what: &'static str,
        /// The refused name.
        name: String,
    },
    /// A rule's `who`, `connect`, `ports`, `proto`, `listen`, `public_ports` or
    /// `services` list is empty.
    #[error("rule {rule:?}: `{field}` is empty; list at least one entry")]
    EmptyList {
        /// The rule.
        rule: String,
        /// The empty key.
        field: &'static str,
    },
    /// A rule refers to `group:NAME` but `[groups]` does not define NAME.
    #[error("rule {rule:?}: group {group:?} is not defined in [groups]")]
    UnknownGroup {
        /// The rule.
        rule: String,
        /// The undefined group.
        group: String,
    },
    /// An identity pattern (in a rule's `who` or a group) is not acceptable.
    #[error("{owner}: identity pattern {pattern:?} is invalid: {reason}")]
    BadIdentityPattern {
        /// Where it appears: `rule "NAME"` or `group "NAME"`.
        owner: String,
        /// The refused pattern.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `connect` entry is not a valid host name, glob, address or network (for
    /// example a network with host bits set, such as `10.0.0.1/8`).
    #[error("rule {rule:?}: connect target {target:?} is invalid: {reason}")]
    BadTarget {
        /// The rule.
        rule: String,
        /// The refused entry.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `ports` entry is out of 1..=65535, a reversed range, or not a port at all.
    #[error("rule {rule:?}: port {value} is invalid: {reason}")]
    BadPort {
        /// The rule.
        rule: String,
        /// The refused entry, as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `public_ports` entry is out of 1..=65535, a reversed range, or not a port at
    /// all.
    #[error("rule {rule:?}: public port {value} is invalid: {reason}")]
    BadPublicPort {
        /// The rule.
        rule: String,
        /// The refused entry, as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `listen` entry is not a service name or a glob over service names (1 to 63
    /// characters of `[a-z0-9_-]`, plus `*` in a glob).
    #[error("rule {rule:?}: listen pattern {pattern:?} is invalid: {reason}")]
    BadListenPattern {
        /// The rule.
        rule: String,
        /// The refused entry.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `services` entry is not a service name or a glob over service names (1 to 63
    /// characters of `[a-z0-9_-]`, plus `*` in a glob).
    #[error("rule {rule:?}: services pattern {pattern:?} is invalid: {reason}")]
    BadServicePattern {
        /// The rule.
        rule: String,
        /// The refused entry.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `routes` entry is not a route name or a glob over route names (1 to 63
    /// characters of `[a-z0-9_-]`, plus `*` in a glob).
    #[error("rule {rule:?}: routes pattern {pattern:?} is invalid: {reason}")]
    BadRoutePattern {
        /// The rule.
        rule: String,
        /// The refused entry.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A rule has `connect` but no `ports`.
    #[error(
        "rule {rule:?}: missing field `ports`: `connect` needs the ports it allows, e.g. ports = [22]"
    )]
    ConnectWithoutPorts {
        /// The rule.
        rule: String,
    },
    /// A rule has `ports` but no `connect`. (Ports the server opens for a client are
    /// `public_ports`.)
    #[error(
        "rule {rule:?}: missing field `connect`: `ports` are the ports of `connect` destinations; ports the server opens for `listen` are `public_ports`"
    )]
    PortsWithoutConnect {
        /// The rule.
        rule: String,
    },
    /// A rule has `proto` but no `connect`: `proto` applies to `connect` only.
    #[error("rule {rule:?}: `proto` applies only to `connect`; remove it or add `connect`")]
    ProtoWithoutConnect {
        /// The rule.
        rule: String,
    },
    /// A rule grants nothing: it has none of `connect`, `listen`, `public_ports`,
    /// `services` and `routes`.
    #[error(
        "rule {rule:?}: grants nothing; add `connect` (with `ports`), `listen`, `public_ports`, `services` or `routes`"
    )]
    NoGrant {
        /// The rule.
        rule: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_count_lines_and_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(Location::of(text, "p", 0).to_string(), "p:1:1");
        assert_eq!(Location::of(text, "p", 6).to_string(), "p:2:1");
        assert_eq!(Location::of(text, "p", 9).to_string(), "p:2:3");
        // Inside a multi-byte character, and past the end: clamped, no panic.
        assert_eq!(Location::of(text, "p", 8).to_string(), "p:2:2");
        assert_eq!(Location::of(text, "p", 999).to_string(), "p:3:1");
    }
}
