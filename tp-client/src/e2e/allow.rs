//! `tp expose --allow PATTERN`: which callers the exposing side accepts, by the
//! identity it verified in their certificate.

use std::fmt;

use policy::glob_matches;

/// One `--allow` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowPattern {
    /// This identity exactly, e.g. `bob@corp`.
    Exact(String),
    /// A glob: `*` matches any run of characters (dots and slashes too), e.g.
    /// `spiffe://corp/ops/*`.
    Glob(String),
    /// `group:NAME`: a caller the server puts in this policy group (the
    /// `groups` of its `incoming` event).
    Group(String),
}

/// Why an `--allow` pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an identity pattern: give an identity, a glob with *, or group:NAME")]
pub struct AllowError(pub String);

impl AllowPattern {
    /// Parses `group:NAME`, a glob containing `*`, or an exact identity.
    pub fn parse(s: &str) -> Result<Self, AllowError> {
        let bad = || AllowError(s.to_owned());
        if s.is_empty() || s.chars().any(char::is_control) {
            return Err(bad());
        }
        if let Some(group) = s.strip_prefix("group:") {
            if group.is_empty() {
                return Err(bad());
            }
            return Ok(AllowPattern::Group(group.to_owned()));
        }
        if s.contains('*') {
            return Ok(AllowPattern::Glob(s.to_owned()));
        }
        Ok(AllowPattern::Exact(s.to_owned()))
    }

    fn matches(&self, caller: &Caller<'_>) -> bool {
        match self {
            AllowPattern::Exact(id) => id == caller.identity,
            AllowPattern::Glob(glob) => glob_matches(glob, caller.identity),
            // The groups are the server's word about `from`: they count only
            // for the identity they were given for.
            AllowPattern::Group(group) => {
                caller.from == Some(caller.identity) && caller.groups.iter().any(|g| g == group)
            }
        }
    }
}

impl fmt::Display for AllowPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowPattern::Exact(s) | AllowPattern::Glob(s) => f.write_str(s),
            AllowPattern::Group(g) => write!(f, "group:{g}"),
        }
    }
}

/// A caller as the exposing side sees it.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The identity read from the certificate the exposing side verified.
    pub identity: &'a str,
    /// The identity the server announced in `incoming`.
    pub from: Option<&'a str>,
    /// The caller's policy groups, as the server announced them.
    pub groups: &'a [String],
}

/// Every `--allow` pattern; empty lets in any caller the server let through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<AllowPattern>);

impl AllowList {
    /// A list of patterns; an empty one allows everyone.
    pub fn new(patterns: Vec<AllowPattern>) -> Self {
        AllowList(patterns)
    }

    /// Whether `caller` matches a pattern (always, with no pattern).
    pub fn permits(&self, caller: &Caller<'_>) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| p.matches(caller))
    }

    /// Whether no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str]) -> AllowList {
        AllowList::new(
            patterns
                .iter()
                .map(|p| AllowPattern::parse(p).unwrap())
                .collect(),
        )
    }

    fn caller<'a>(identity: &'a str, from: Option<&'a str>, groups: &'a [String]) -> Caller<'a> {
        Caller {
            identity,
            from,
            groups,
        }
    }

    #[test]
    fn patterns_parse() {
        assert_eq!(
            AllowPattern::parse("bob@corp"),
            Ok(AllowPattern::Exact("bob@corp".into()))
        );
        assert_eq!(
            AllowPattern::parse("spiffe://corp/*"),
            Ok(AllowPattern::Glob("spiffe://corp/*".into()))
        );
        assert_eq!(
            AllowPattern::parse("group:ops"),
            Ok(AllowPattern::Group("ops".into()))
        );
        for bad in ["", "group:", "a\nb"] {
            assert!(AllowPattern::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            AllowPattern::parse("group:ops").unwrap().to_string(),
            "group:ops"
        );
    }

    #[test]
    fn no_pattern_allows_everyone() {
        assert!(AllowList::default().permits(&caller("anyone", None, &[])));
    }

    #[test]
    fn exact_glob_and_group() {
        let ops = vec!["ops".to_owned()];
        let allow = list(&["bob@corp", "spiffe://corp/laptop/*", "group:ops"]);
        assert!(allow.permits(&caller("bob@corp", Some("bob@corp"), &[])));
        assert!(!allow.permits(&caller("bob@corp.evil", None, &[])));
        assert!(allow.permits(&caller("spiffe://corp/laptop/carol", None, &[])));
        assert!(!allow.permits(&caller("spiffe://corp/server/x", None, &[])));
        assert!(allow.permits(&caller("dave@corp", Some("dave@corp"), &ops)));
        // Groups the server gave for another identity do not count.
        assert!(!allow.permits(&caller("dave@corp", Some("erin@corp"), &ops)));
        assert!(!allow.permits(&caller("dave@corp", None, &ops)));
    }
}
