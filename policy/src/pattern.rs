//! Patterns of policy rules: `who` identity patterns, `connect` targets, and the
//! service name patterns of `listen` and `services`.
//!
//! Every pattern is parsed once into a typed value; matching never fails and never
//! allocates.

use std::net::IpAddr;

use tp_proto::Host;

use crate::cidr::Cidr;

/// A pattern with at least one `*`, which matches any run of characters (dots and
/// slashes included, and the empty run). All other characters match themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob(String);

impl Glob {
    /// Whether `text` matches: see [`glob_matches`].
    pub(crate) fn matches(&self, text: &str) -> bool {
        glob_matches(&self.0, text)
    }
}

/// A `connect` target of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One canonical host name, e.g. `db1.corp.example`.
    Name(String),
    /// A glob over canonical host names, e.g. `*.internal`.
    NameGlob(Glob),
    /// A network or single address; matches the address dialed, never a name.
    Net(Cidr),
}

impl Target {
    /// Parses a target: `a.b.c.d/n` or `v6/n` or a single address in standard notation,
    /// a glob containing `*`, or an exact host name (canonicalized like a requested host,
    /// so `DB1.Internal.` is `db1.internal`).
    pub(crate) fn parse(s: &str) -> Result<Target, String> {
        if s.contains('/') {
            return Cidr::parse(s).map(Target::Net).map_err(|e| e.to_string());
        }
        if s.contains('*') {
            return parse_name_glob(s).map(Target::NameGlob);
        }
        match Host::parse(s).map_err(|e| e.to_string())? {
            Host::Name(name) => Ok(Target::Name(name)),
            Host::Ip(ip) => {
                // Only the standard spelling: `10.1` would silently mean 10.0.0.1.
                let plain = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
                if plain.unwrap_or(s).parse::<IpAddr>().is_err() {
                    return Err(format!("write the address in standard notation, as {ip}"));
                }
                Ok(Target::Net(Cidr::host(ip)))
            }
        }
    }

    /// Whether this is a name target matching `name` (canonical, from `Host::Name`).
    pub(crate) fn matches_name(&self, name: &str) -> bool {
        match self {
            Target::Name(n) => n == name,
            Target::NameGlob(g) => g.matches(name),
            Target::Net(_) => false,
        }
    }
}

fn parse_name_glob(s: &str) -> Result<Glob, String> {
    let lower = s.to_ascii_lowercase();
    let pattern = lower.strip_suffix('.').unwrap_or(&lower);
    if let Some(c) = pattern
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*')))
    {
        return Err(format!("{c:?} cannot appear in a host name pattern"));
    }
    let labels: Vec<&str> = pattern.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Err("a host name pattern cannot have an empty label".to_owned());
    }
    let numeric = |l: &&str| l.bytes().all(|b| b.is_ascii_digit() || b == b'*');
    if labels.iter().all(numeric) && labels.iter().any(|l| l.bytes().any(|b| b.is_ascii_digit())) {
        return Err("globs match host names, not addresses; use a CIDR such as 10.0.0.0/8".into());
    }
    Ok(Glob(pattern.to_owned()))
}

/// An identity pattern: an exact identity value or a glob over identity values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdPattern {
    /// Matches exactly this value.
    Exact(String),
    /// Matches values matching the glob, e.g. `spiffe://corp/ops/*`.
    Glob(Glob),
}

impl IdPattern {
    /// Parses an identity pattern. Refuses empty patterns, control characters and
    /// surrounding whitespace (almost certainly a typo that would never match).
    pub(crate) fn parse(s: &str) -> Result<IdPattern, String> {
        if s.is_empty() {
            return Err("an identity pattern cannot be empty".to_owned());
        }
        if s.chars().any(char::is_control) {
            return Err("an identity pattern cannot contain control characters".to_owned());
        }
        if s.trim() != s {
            return Err("an identity pattern cannot start or end with whitespace".to_owned());
        }
        Ok(if s.contains('*') {
            IdPattern::Glob(Glob(s.to_owned()))
        } else {
            IdPattern::Exact(s.to_owned())
        })
    }

    /// Whether the identity value `id` matches.
    pub(crate) fn matches(&self, id: &str) -> bool {
        match self {
            IdPattern::Exact(e) => e == id,
            IdPattern::Glob(g) => g.matches(id),
        }
    }
}

/// The longest service name, as `tp_proto`'s codec accepts it.
pub(crate) const MAX_SERVICE_LEN: usize = 63;

/// Whether `b` may appear in a service name: `[a-z0-9_-]`, as `tp_proto`'s codec accepts.
fn service_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

/// Whether `name` is a service name the codec would accept: 1 to 63 characters of
/// `[a-z0-9_-]`.
pub(crate) fn valid_service_name(name: &str) -> bool {
    (1..=MAX_SERVICE_LEN).contains(&name.len()) && name.bytes().all(service_char)
}

/// Checks a route name as the server config gives it (`[[terminate]] name`): the
/// syntax of a service name, 1 to 63 characters of `[a-z0-9_-]`, and no `*`. The
/// error says what is wrong.
pub fn check_route_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a route name cannot be empty".to_owned());
    }
    if name.contains('*') {
        return Err("a route name cannot contain '*'".to_owned());
    }
    ServicePattern::parse_named(name, "route").map(|_| ())
}

/// A pattern over service names (`listen`, `services`, `routes`): an exact name or a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServicePattern {
    /// Matches exactly this name, e.g. `alice-laptop`.
    Exact(String),
    /// Matches names matching the glob, e.g. `*-laptop` or `*`.
    Glob(Glob),
}

impl ServicePattern {
    /// Parses a service name pattern: a service name (1 to 63 characters of
    /// `[a-z0-9_-]`), or such characters and at least one `*`. Nothing is canonicalized:
    /// a pattern that could never match a name the codec accepts is refused.
    #[cfg(test)]
    pub(crate) fn parse(s: &str) -> Result<ServicePattern, String> {
        ServicePattern::parse_named(s, "service")
    }

    /// Like [`ServicePattern::parse`], for names of another `kind` with the same
    /// syntax (`route`): the reasons name that kind.
    pub(crate) fn parse_named(s: &str, kind: &str) -> Result<ServicePattern, String> {
        const CHARS: &str = "1 to 63 characters of a-z, 0-9, '-' and '_'";
        if s.is_empty() {
            return Err(format!("a {kind} name pattern cannot be empty"));
        }
        if s.contains('.') {
            return Err(format!("{kind} names have no dots; they are {CHARS}"));
        }
        let allowed = |c: char| c == '*' || u8::try_from(c).is_ok_and(service_char);
        if let Some(c) = s.chars().find(|&c| !allowed(c) && !c.is_ascii_uppercase()) {
            return Err(format!(
                "{c:?} cannot appear in a {kind} name; names are {CHARS}"
            ));
        }
        let literal = s.bytes().filter(|&b| b != b'*').count();
        if literal > MAX_SERVICE_LEN {
            return Err(format!(
                "{kind} names are at most {MAX_SERVICE_LEN} characters"
            ));
        }
        if s.chars().any(|c| c.is_ascii_uppercase()) {
            let lower = s.to_ascii_lowercase();
            return Err(format!(
                "{kind} names are lowercase; did you mean {lower:?}?"
            ));
        }
        Ok(if s.contains('*') {
            ServicePattern::Glob(Glob(s.to_owned()))
        } else {
            ServicePattern::Exact(s.to_owned())
        })
    }

    /// Whether the service name `name` matches. A name the codec would refuse never
    /// matches, not even `*`.
    pub(crate) fn matches(&self, name: &str) -> bool {
        valid_service_name(name)
            && match self {
                ServicePattern::Exact(e) => e == name,
                ServicePattern::Glob(g) => g.matches(name),
            }
    }
}

/// Whether `text` matches `glob`, where `*` matches any run of characters
/// (including none, and including `/`, `.` and `@`) and every other character
/// itself: the identity globs of the policy file, also used by `tp expose --allow`.
/// Linear backtracking on the last `*`: O(len²) at worst.
pub fn glob_matches(glob: &str, text: &str) -> bool {
    let (p, s) = (glob.as_bytes(), text.as_bytes());
    let (mut pi, mut si) = (0, 0);
    // Position of the last '*' seen, and where in `s` its run currently ends.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, run_end)) => {
                    star = Some((sp, run_end + 1));
                    pi = sp + 1;
                    si = run_end + 1;
                }
                None => return false,
            },
        }
    }
    p.iter().skip(pi).all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob(p.to_owned())
    }

    #[test]
    fn glob_matching() {
        let cases = [
            ("*.internal", "db1.internal", true),
            ("*.internal", "a.b.internal", true),
            ("*.internal", "internal", false),
            ("*.internal", "db1.internal.evil.com", false),
            ("*.internal", "db1-internal", false),
            ("db*.corp", "db.corp", true),
            ("db*.corp", "db12.corp", true),
            ("db*.corp", "web.corp", false),
            ("*", "", true),
            ("*", "anything.at.all", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYcZ", false),
            ("**", "x", true),
            ("a*", "b", false),
            ("spiffe://corp/ops/*", "spiffe://corp/ops/alice", true),
            ("spiffe://corp/ops/*", "spiffe://corp/ops2/alice", false),
            ("spiffe://corp/ops/*", "spiffe://corp/ops", false),
            ("*@corp.example", "alice@corp.example", true),
            ("*@corp.example", "alice@corp.example.evil", false),
        ];
        for (p, s, want) in cases {
            assert_eq!(glob(p).matches(s), want, "{p} vs {s}");
        }
    }

    #[test]
    fn glob_matching_is_not_exponential() {
        let g = glob(&"*a".repeat(30));
        assert!(!g.matches(&"a".repeat(29)));
        assert!(g.matches(&"a".repeat(300)));
    }

    #[test]
    fn targets_parse_by_shape() {
        assert_eq!(
            Target::parse("DB1.Internal."),
            Ok(Target::Name("db1.internal".into()))
        );
        assert_eq!(
            Target::parse("*.Internal"),
            Ok(Target::NameGlob(glob("*.internal")))
        );
        assert_eq!(
            Target::parse("10.0.0.0/8"),
            Ok(Target::Net(Cidr::parse("10.0.0.0/8").unwrap()))
        );
        assert_eq!(
            Target::parse("192.0.2.7"),
            Ok(Target::Net(Cidr::parse("192.0.2.7/32").unwrap()))
        );
        assert_eq!(
            Target::parse("[::1]"),
            Ok(Target::Net(Cidr::parse("::1/128").unwrap()))
        );
        assert_eq!(
            Target::parse("::ffff:127.0.0.1"),
            Ok(Target::Net(Cidr::parse("127.0.0.1/32").unwrap()))
        );
    }

    #[test]
    fn bad_targets_are_refused_with_a_reason() {
        for s in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "127.1",
            "0x7f000001",
            "2130706433",
            "10.0.0.*",
            "10.*",
            "*.1",
            "fe80::*",
            "a..b",
            "*..internal",
            "",
            "a b",
            "db1.internal/8",
        ] {
            let err = Target::parse(s).unwrap_err();
            assert!(!err.is_empty(), "{s}");
        }
        assert!(Target::parse("127.1").unwrap_err().contains("127.0.0.1"));
        assert!(
            Target::parse("10.0.0.1/8")
                .unwrap_err()
                .contains("10.0.0.0/8")
        );
    }

    #[test]
    fn name_targets_never_match_other_kinds() {
        let net = Target::parse("10.0.0.0/8").unwrap();
        assert!(!net.matches_name("10.0.0.1"));
        assert!(Target::parse("*").unwrap().matches_name("localhost"));
        let exact = Target::parse("db1.corp.example").unwrap();
        assert!(exact.matches_name("db1.corp.example"));
        assert!(!exact.matches_name("xdb1.corp.example"));
    }

    #[test]
    fn identity_patterns() {
        let p = IdPattern::parse("alice@corp.example").unwrap();
        assert!(p.matches("alice@corp.example"));
        assert!(!p.matches("Alice@corp.example"));
        assert!(!p.matches("alice@corp.example "));
        let g = IdPattern::parse("spiffe://corp/ops/*").unwrap();
        assert!(g.matches("spiffe://corp/ops/bob"));
        for bad in ["", " alice", "alice ", "a\nb"] {
            assert!(IdPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn service_patterns() {
        let exact = ServicePattern::parse("alice-laptop").unwrap();
        assert_eq!(exact, ServicePattern::Exact("alice-laptop".into()));
        assert!(exact.matches("alice-laptop"));
        assert!(!exact.matches("alice-laptop2"));
        let glob = ServicePattern::parse("*-laptop").unwrap();
        assert_eq!(glob, ServicePattern::Glob(Glob("*-laptop".into())));
        for (name, want) in [
            ("alice-laptop", true),
            ("-laptop", true),
            ("a_b-laptop", true),
            ("laptop", false),
            ("alice-laptop-2", false),
        ] {
            assert_eq!(glob.matches(name), want, "{name}");
        }
        let any = ServicePattern::parse("*").unwrap();
        assert!(any.matches("x"));
        assert!(any.matches(&"a".repeat(63)));
        // Names the codec refuses match nothing, not even `*`.
        for bad in ["", "Alice", "a.b", "a b", "é", &"a".repeat(64)] {
            assert!(!any.matches(bad), "{bad:?}");
        }
        assert!(ServicePattern::parse(&"a".repeat(63)).is_ok());
        assert!(ServicePattern::parse(&format!("*{}*", "a".repeat(63))).is_ok());
    }

    #[test]
    fn bad_service_patterns_are_refused_with_a_reason() {
        for (bad, reason) in [
            ("", "cannot be empty"),
            ("Alice-Laptop", r#"lowercase; did you mean "alice-laptop"?"#),
            ("*-Laptop", r#"lowercase; did you mean "*-laptop"?"#),
            ("alice.laptop", "no dots"),
            ("*.internal", "no dots"),
            ("Alice laptop", "' ' cannot appear"),
            ("alice laptop", "' ' cannot appear"),
            ("laptop?", "'?' cannot appear"),
            ("lâptop", "'â' cannot appear"),
            ("group:ops", "':' cannot appear"),
            (&"a".repeat(64), "at most 63"),
            (&format!("*{}", "a".repeat(64)), "at most 63"),
        ] {
            let err = ServicePattern::parse(bad).unwrap_err();
            assert!(err.contains(reason), "{bad:?}: {err}");
        }
    }

    #[test]
    fn route_names() {
        assert_eq!(check_route_name("dot"), Ok(()));
        assert_eq!(check_route_name("redis_2-a"), Ok(()));
        for (bad, reason) in [
            ("", "a route name cannot be empty"),
            ("dns.example", "route names have no dots"),
            ("DoT", r#"route names are lowercase; did you mean "dot"?"#),
            ("do*", "cannot contain '*'"),
            ("d t", "' ' cannot appear in a route name"),
        ] {
            let err = check_route_name(bad).unwrap_err();
            assert!(err.contains(reason), "{bad:?}: {err}");
        }
    }
}
