//! The crypto reference: `openssl speed -evp CIPHER -bytes 16384`, one core.

use std::process::Command;

use anyhow::{Context, bail};

/// Ciphers measured: AES-128-GCM (what peers were told to use) and AES-256-GCM
/// (what tp and socat negotiate, having no setting for it).
pub(crate) const CIPHERS: [&str; 2] = ["aes-128-gcm", "aes-256-gcm"];

/// GB/s (10^9 bytes) of `openssl speed` for `cipher` at 16 KiB blocks.
pub(crate) fn speed(cipher: &str, seconds: u32) -> anyhow::Result<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-evp", cipher, "-bytes", "16384", "-seconds"])
        .arg(seconds.to_string())
        .output()
        .context("running openssl speed")?;
    if !out.status.success() {
        bail!(
            "openssl speed failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&String::from_utf8_lossy(&out.stdout), cipher)
}

/// Reads the cipher's row: `AES-128-GCM   4336977.20k` (thousands of bytes per second).
pub(crate) fn parse(output: &str, cipher: &str) -> anyhow::Result<f64> {
    let row = output
        .lines()
        .find(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|first| first.eq_ignore_ascii_case(cipher))
        })
        .with_context(|| format!("no {cipher} row in openssl speed's output"))?;
    let last = row
        .split_whitespace()
        .last()
        .context("empty openssl speed row")?;
    let kilo: f64 = last
        .trim_end_matches('k')
        .parse()
        .with_context(|| format!("not a number: {last:?}"))?;
    Ok(kilo * 1e3 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_the_16k_column() {
        let out = "version: 3.0.19\nThe 'numbers' are in 1000s of bytes per second processed.\n\
                   type          16384 bytes\nAES-128-GCM    4336977.20k\n";
        let gbps = parse(out, "aes-128-gcm").expect("row");
        assert!((gbps - 4.33697720).abs() < 1e-9);
        assert!(parse(out, "aes-256-gcm").is_err());
    }
}
