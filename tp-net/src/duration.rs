//! Durations written as `"10s"`, `"500ms"`, `"2m"`, `"1m30s"`: never bare numbers, so
//! a value always says its unit.

use std::time::Duration;

/// Why a duration spelling was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Not a sequence of `<number><unit>` groups with units ms, s, m, h.
    #[error("{0:?} is not a duration like \"10s\", \"500ms\", \"2m\" or \"1m30s\"")]
    Malformed(String),
    /// The duration is zero, which would make every attempt fail at once.
    #[error("{0:?} must be longer than zero")]
    Zero(String),
    /// Larger than any useful timeout.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Parses a positive timeout such as `"10s"` or `"1m30s"`.
pub fn parse_timeout(text: &str) -> Result<Duration, DurationError> {
    let malformed = || DurationError::Malformed(text.to_owned());
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(malformed());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(malformed());
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let n: u64 = number.parse().map_err(|_| malformed())?;
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3_600),
            _ => return Err(malformed()),
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| DurationError::TooLarge(text.to_owned()))?;
        rest = after;
    }
    if total.is_zero() {
        return Err(DurationError::Zero(text.to_owned()));
    }
    if total > Duration::from_secs(24 * 3_600) {
        return Err(DurationError::TooLarge(text.to_owned()));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        assert_eq!(parse_timeout("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_timeout("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_timeout("1m30s"), Ok(Duration::from_secs(90)));
        for bad in ["", "10", "s", "10 s", "-1s", "1.5s", "10sec", "1d"] {
            assert!(
                matches!(parse_timeout(bad), Err(DurationError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(parse_timeout("0s"), Err(DurationError::Zero(_))));
        assert!(matches!(
            parse_timeout("25h"),
            Err(DurationError::TooLarge(_))
        ));
    }
}
