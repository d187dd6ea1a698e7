//! Durations written the way operators type them: `"30s"`, `"15m"`, `"8h"`, `"90d"`.

use std::time::Duration;

use super::PkiError;

/// The longest duration [`parse_ttl`] accepts: 100 years of 365 days. Longer values are
/// certainly typos, and refusing them keeps date arithmetic far from overflow.
pub const MAX_TTL: Duration = Duration::from_secs(36_500 * 86_400);

/// Parses a TTL such as `"30m"`, `"8h"` or `"3650d"`: an unsigned decimal number followed
/// by one unit, `s` (seconds), `m` (minutes), `h` (hours) or `d` (days of 86 400 s).
///
/// Bare numbers, zero, compound forms (`"1h30m"`) and values above [`MAX_TTL`] are
/// refused: a TTL is always explicit about its unit.
pub fn parse_ttl(s: &str) -> Result<Duration, PkiError> {
    let err = |reason| PkiError::InvalidTtl {
        input: s.to_owned(),
        reason,
    };
    let t = s.trim();
    let Some(unit) = t.chars().last() else {
        return Err(err("empty"));
    };
    let secs_per_unit: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        c if c.is_ascii_digit() => return Err(err("missing unit")),
        _ => return Err(err("unknown unit")),
    };
    let digits = &t[..t.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("not a whole number"));
    }
    let n: u64 = digits.parse().map_err(|_| err("number too large"))?;
    if n == 0 {
        return Err(err("must be greater than zero"));
    }
    let secs = n
        .checked_mul(secs_per_unit)
        .filter(|&secs| secs <= MAX_TTL.as_secs())
        .ok_or_else(|| err("longer than 36500d"))?;
    Ok(Duration::from_secs(secs))
}

/// Formats a duration the way [`parse_ttl`] reads it, in the largest unit that divides
/// it exactly: 31 days is `"31d"`, 90 minutes `"90m"`, 90 seconds `"90s"`. Sub-second
/// parts are dropped.
pub fn format_ttl(ttl: Duration) -> String {
    let secs = ttl.as_secs();
    [(86_400, 'd'), (3_600, 'h'), (60, 'm')]
        .into_iter()
        .find(|&(unit, _)| secs != 0 && secs.is_multiple_of(unit))
        .map_or_else(
            || format!("{secs}s"),
            |(unit, c)| format!("{}{c}", secs / unit),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ttl_units() {
        assert_eq!(parse_ttl("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_ttl("30m").unwrap(), Duration::from_secs(1_800));
        assert_eq!(parse_ttl("4h").unwrap(), Duration::from_secs(14_400));
        assert_eq!(parse_ttl("90d").unwrap(), Duration::from_secs(90 * 86_400));
        assert_eq!(
            parse_ttl(" 3650d ").unwrap(),
            Duration::from_secs(3_650 * 86_400)
        );
        assert_eq!(parse_ttl("36500d").unwrap(), MAX_TTL);
    }

    #[test]
    fn format_ttl_round_trips() {
        for (secs, text) in [
            (31 * 86_400, "31d"),
            (7_200, "2h"),
            (5_400, "90m"),
            (90, "90s"),
        ] {
            assert_eq!(format_ttl(Duration::from_secs(secs)), text);
            assert_eq!(parse_ttl(text).unwrap(), Duration::from_secs(secs));
        }
        assert_eq!(format_ttl(Duration::ZERO), "0s");
    }

    #[test]
    fn parse_ttl_refusals() {
        for bad in [
            "",
            "h",
            "8",
            "0h",
            "-1h",
            "+1h",
            "1.5h",
            "1h30m",
            "8 h",
            "8H",
            "8w",
            "8µ",
            "36501d",
            "99999999999999999999d",
        ] {
            let e = parse_ttl(bad).expect_err(bad);
            assert!(matches!(e, PkiError::InvalidTtl { .. }), "{bad}: {e}");
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }
}
