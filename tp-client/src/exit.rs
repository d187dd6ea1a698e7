//! Exit statuses of `tp`: one table, used by the code, the `--help` text and
//! checked against `docs/client.md` by a test.

use tp_proto::ErrorCode;

/// Success: the tunnel ran and closed cleanly (or `tp up` was stopped).
pub const OK: u8 = 0;
/// A local error: configuration, cannot reach the server, TLS handshake failed,
/// the tunnel broke.
pub const LOCAL: u8 = 1;
/// A usage error: bad arguments (clap's status).
pub const USAGE: u8 = 2;
/// The server answered with a code this version of tp does not know.
pub const OTHER_CODE: u8 = 19;

/// The server's answer codes and the status `tp` exits with for each.
pub const ANSWER_STATUSES: [(&str, u8); 10] = [
    ("denied", 10),
    ("bad_request", 11),
    ("unsupported_version", 12),
    ("unsupported", 13),
    ("unreachable", 14),
    ("refused", 15),
    ("timeout", 16),
    ("busy", 17),
    ("internal", 18),
    ("conflict", 20),
];

/// The exit status for a server's error answer.
pub fn for_answer(code: &ErrorCode) -> u8 {
    ANSWER_STATUSES
        .iter()
        .find(|(wire, _)| *wire == code.as_str())
        .map_or(OTHER_CODE, |&(_, status)| status)
}

/// The exit status table as text, one status a line, for `--help`.
pub fn help_table() -> String {
    let mut out = String::new();
    out.push_str(&format!("  {OK:>2}  success\n"));
    out.push_str(&format!(
        "  {LOCAL:>2}  local error: config, cannot reach the server, TLS handshake failed, tunnel broke\n"
    ));
    out.push_str(&format!("  {USAGE:>2}  usage error\n"));
    for (wire, status) in ANSWER_STATUSES {
        out.push_str(&format!("  {status:>2}  server answered {wire}\n"));
    }
    out.push_str(&format!(
        "  {OTHER_CODE:>2}  server answered another error code\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const KNOWN: [ErrorCode; 10] = [
        ErrorCode::Denied,
        ErrorCode::BadRequest,
        ErrorCode::UnsupportedVersion,
        ErrorCode::Unsupported,
        ErrorCode::Unreachable,
        ErrorCode::Refused,
        ErrorCode::Timeout,
        ErrorCode::Busy,
        ErrorCode::Internal,
        ErrorCode::Conflict,
    ];

    #[test]
    fn every_known_code_has_its_own_status() {
        let mut seen = HashSet::from([OK, LOCAL, USAGE, OTHER_CODE]);
        for code in KNOWN {
            assert_eq!(ErrorCode::from_wire(code.as_str()), code);
            let status = for_answer(&code);
            assert!(
                (10..=18).contains(&status) || status == 20,
                "{code}: {status}"
            );
            assert!(seen.insert(status), "{code}: {status} used twice");
        }
        assert_eq!(for_answer(&ErrorCode::Denied), 10);
        assert_eq!(for_answer(&ErrorCode::Internal), 18);
        assert_eq!(for_answer(&ErrorCode::Conflict), 20);
        assert_eq!(for_answer(&ErrorCode::Other("quota".into())), OTHER_CODE);
    }

    #[test]
    fn docs_list_every_status() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/client.md");
        let docs = std::fs::read_to_string(path).expect("docs/client.md exists");
        for (wire, status) in ANSWER_STATUSES {
            let row = format!("| {status} | `{wire}` |");
            assert!(docs.contains(&row), "docs/client.md lacks the row {row:?}");
        }
        assert!(docs.contains(&format!("| {OTHER_CODE} |")));
        assert!(help_table().contains("10  server answered denied"));
        assert!(help_table().contains("20  server answered conflict"));
    }
}
