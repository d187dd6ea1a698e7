//! Text a peer sent (a server's message, a certificate's name, an HTTP line),
//! made safe to print.

/// `s` with control characters escaped, so a peer's text prints as one line and
/// cannot drive the terminal.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(one_line("a\nb\x1b[31mé\t"), "a\\nb\\u{1b}[31mé\\t");
        assert_eq!(one_line("plain text"), "plain text");
    }
}
