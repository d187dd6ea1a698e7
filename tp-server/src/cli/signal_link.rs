//! `tp-server signal-link DOMAIN`: the link Signal users open to use this server
//! as their proxy.

use anyhow::bail;

/// The proxy link for `domain` (a DNS name this server answers on port 443).
pub fn link(domain: &str) -> anyhow::Result<String> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let valid = domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        bail!(
            "{domain:?} is not a DNS name (the name Signal clients connect to, e.g. proxy.example.org)"
        );
    }
    Ok(format!("https://signal.tube/#{domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links() {
        assert_eq!(
            link("Proxy.Example.org.").unwrap(),
            "https://signal.tube/#proxy.example.org"
        );
        assert!(link("localhost").is_err());
        assert!(link("bad_name.org").is_err());
        assert!(link("-a.org").is_err());
        assert!(link("a..org").is_err());
    }
}
