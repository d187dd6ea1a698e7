//! The words of `signal-check`: one line per host, the summary, and plain
//! reasons for what failed. Pure functions of the results.

use std::io;
use std::time::Duration;

use rustls::{CertificateError, ProtocolVersion};

use super::probe::{Answer, Failure, Step};
use super::verify::{Chain, Seen};

/// What the lines name besides the host.
#[derive(Debug)]
pub(super) struct Names<'a> {
    /// The proxy's name.
    pub domain: &'a str,
    /// Where it was dialed (`ADDR:PORT`, or several).
    pub at: &'a str,
    /// The deadline of one host's check.
    pub timeout: Duration,
}

// Certificate names and HTTP lines come from the peer: printed through one_line.
use tp_net::text::one_line;

/// `184 ms`, `2.5 s`, `15 s`.
pub(super) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1_000) {
        format!("{} s", ms / 1_000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// One host's line (without the trailing newline); `width` aligns host names.
pub(super) fn host_line(
    host: &str,
    width: usize,
    result: &Result<Answer, Failure>,
    names: &Names<'_>,
) -> String {
    match result {
        Ok(answer) => {
            let mut line = format!(
                "  ok    {host:<width$}  {} in {} ({} through the relay)",
                version(answer.version),
                duration(answer.total),
                duration(answer.inner)
            );
            if let Some(seen) = &answer.seen {
                line.push_str(&format!("; {}", answered_by(seen)));
                line.push_str(match seen.chain {
                    Some(Chain::Verified) => "; chain verified",
                    _ => "; chain not verified",
                });
            }
            line
        }
        Err(failure) => format!(
            "  FAIL  {host:<width$}  {}",
            failure_text(host, failure, names)
        ),
    }
}

/// `answered by CN=..., issued by CN=...`.
fn answered_by(seen: &Seen) -> String {
    format!(
        "answered by {}, issued by {}",
        seen.presented.subject, seen.presented.issuer
    )
}

fn version(v: Option<ProtocolVersion>) -> String {
    match v {
        Some(ProtocolVersion::TLSv1_3) => "TLS 1.3".into(),
        Some(ProtocolVersion::TLSv1_2) => "TLS 1.2".into(),
        Some(other) => format!("{other:?}"),
        None => "TLS".into(),
    }
}

/// Why `host` failed, in plain words.
pub(super) fn failure_text(host: &str, failure: &Failure, names: &Names<'_>) -> String {
    let Names {
        domain,
        at,
        timeout,
    } = names;
    let timeout = duration(*timeout);
    match failure {
        Failure::Tcp(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            format!("TCP: {at} refused the connection (is tp-server running and listening there?)")
        }
        Failure::Tcp(e) => format!("TCP: cannot connect to {at}: {e}"),
        Failure::Timeout(Step::Tcp) => format!("TCP: no answer from {at} within {timeout}"),
        Failure::OuterTls(e) => format!(
            "outer TLS with {domain}: {}",
            handshake_error(e, "for a private CA, pass it with --outer-ca FILE")
        ),
        Failure::Timeout(Step::OuterTls) => format!(
            "outer TLS with {domain}: no handshake within {timeout} (is it a TLS server at {at}?)"
        ),
        Failure::RelayClosed { after } => format!(
            "the relay closed the connection {} after the inner hello, without an answer: \
             {host} is not on the server's allowlist, or the Signal relay is off \
             (no [signal] enabled = true), or the server could not reach {host} (its log says which)",
            duration(*after)
        ),
        Failure::Website { status_line } => format!(
            "the website answered (\"{}\"), not the Signal relay: the relay is off on this server \
             ([signal] enabled = true turns it on)",
            one_line(status_line)
        ),
        Failure::Timeout(Step::InnerTls) => format!(
            "no answer to the inner TLS hello within {timeout}: the Signal relay may be off on this \
             server (the website then waits for a request), or {host} is slow to answer"
        ),
        Failure::InnerTls { error, seen } => {
            let mut text = format!(
                "inner TLS with {host}: {}",
                handshake_error(error, "it is not the CA given with --inner-ca")
            );
            if let Some(seen) = seen {
                text.push_str(&format!("; {}", answered_by(seen)));
            }
            text
        }
    }
}

/// A failed handshake in plain words; `unknown_ca_hint` follows an unknown issuer.
fn handshake_error(e: &io::Error, unknown_ca_hint: &str) -> String {
    if let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        return tls_error(tls, unknown_ca_hint);
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            "the server closed the connection during the handshake".into()
        }
        io::ErrorKind::ConnectionReset => {
            "the server reset the connection during the handshake".into()
        }
        _ => e.to_string(),
    }
}

/// A rustls error in plain words.
fn tls_error(e: &rustls::Error, unknown_ca_hint: &str) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            format!("its certificate is not from a CA trusted here ({unknown_ca_hint})")
        }
        rustls::Error::InvalidCertificate(cert) => format!("its {cert}"),
        rustls::Error::AlertReceived(alert) => {
            format!("the server refused the handshake (TLS alert {alert:?})")
        }
        rustls::Error::InvalidMessage(_) => format!("the answer is not TLS ({e})"),
        other => other.to_string(),
    }
}

/// The closing lines: how many of `hosts` work, and what "chain not verified"
/// means when a line says it.
pub(super) fn summary(
    domain: &str,
    hosts: &[String],
    results: &[Result<Answer, Failure>],
) -> String {
    let working = results.iter().filter(|r| r.is_ok()).count();
    let total = results.len();
    let only = match hosts {
        [one] => Some(one.as_str()),
        _ => None,
    };
    let verdict = match (only, working) {
        (Some(host), 1) => format!("works for {host}"),
        (Some(host), _) => format!("does not work for {host}"),
        (None, w) if w == total => format!("works for all {total} hosts"),
        (None, 0) => format!("works for none of the {total} hosts"),
        (None, w) => format!("works for {w} of {total} hosts; {} failed", total - w),
    };
    let mut text = format!("Signal relay on {domain}: {verdict}.\n");
    let unverified = results.iter().any(|r| {
        matches!(
            r,
            Ok(Answer {
                seen: Some(Seen {
                    chain: Some(Chain::NotVerified),
                    ..
                }),
                ..
            })
        )
    });
    if unverified {
        text.push_str(
            "\"chain not verified\": the certificate has the host's name, is in date and its key \
             signed the handshake, but its issuer was not checked: Signal's hosts use Signal's own \
             CA, which tp-server does not ship. Give that CA with --inner-ca FILE to check it too.\n",
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::signal_check::verify::Presented;

    fn names() -> Names<'static> {
        Names {
            domain: "proxy.example.org",
            at: "192.0.2.7:443",
            timeout: Duration::from_secs(15),
        }
    }

    fn seen(chain: Option<Chain>) -> Seen {
        Seen {
            presented: Presented {
                subject: "CN=chat.signal.org".into(),
                issuer: "CN=Signal CA".into(),
            },
            chain,
        }
    }

    fn answer(chain: Chain) -> Answer {
        Answer {
            total: Duration::from_millis(184),
            inner: Duration::from_millis(151),
            version: Some(ProtocolVersion::TLSv1_3),
            seen: Some(seen(Some(chain))),
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(Duration::from_millis(7)), "7 ms");
        assert_eq!(duration(Duration::from_millis(2_500)), "2.5 s");
        assert_eq!(duration(Duration::from_secs(15)), "15 s");
    }

    #[test]
    fn an_ok_line_says_who_answered_and_how_well_it_was_checked() {
        let line = host_line(
            "chat.signal.org",
            18,
            &Ok(answer(Chain::NotVerified)),
            &names(),
        );
        assert_eq!(
            line,
            "  ok    chat.signal.org     TLS 1.3 in 184 ms (151 ms through the relay); \
             answered by CN=chat.signal.org, issued by CN=Signal CA; chain not verified"
        );
        let line = host_line("chat.signal.org", 0, &Ok(answer(Chain::Verified)), &names());
        assert!(line.ends_with("; chain verified"), "{line}");
    }

    #[test]
    fn failures_are_said_in_plain_words() {
        let text = |f: Failure| failure_text("cdn.signal.org", &f, &names());
        assert_eq!(
            text(Failure::Tcp(io::ErrorKind::ConnectionRefused.into())),
            "TCP: 192.0.2.7:443 refused the connection (is tp-server running and listening there?)"
        );
        assert_eq!(
            text(Failure::Timeout(Step::Tcp)),
            "TCP: no answer from 192.0.2.7:443 within 15 s"
        );
        let unknown = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(
            text(Failure::OuterTls(unknown)),
            "outer TLS with proxy.example.org: its certificate is not from a CA trusted here \
             (for a private CA, pass it with --outer-ca FILE)"
        );
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(
            text(Failure::OuterTls(eof)),
            "outer TLS with proxy.example.org: the server closed the connection during the handshake"
        );
        let closed = text(Failure::RelayClosed {
            after: Duration::from_millis(3),
        });
        assert!(
            closed.starts_with("the relay closed the connection 3 ms after the inner hello"),
            "{closed}"
        );
        assert!(
            closed.contains("cdn.signal.org is not on the server's allowlist"),
            "{closed}"
        );
        let website = text(Failure::Website {
            status_line: "HTTP/1.1 400 Bad Request\u{1b}[2J".into(),
        });
        assert!(
            website.starts_with(
                "the website answered (\"HTTP/1.1 400 Bad Request\\u{1b}[2J\"), not the Signal relay"
            ),
            "{website}"
        );
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
        );
        assert_eq!(
            text(Failure::InnerTls {
                error: alert,
                seen: None
            }),
            "inner TLS with cdn.signal.org: the server refused the handshake (TLS alert HandshakeFailure)"
        );
        let name = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
        );
        let wrong = text(Failure::InnerTls {
            error: name,
            seen: Some(seen(None)),
        });
        assert!(
            wrong.starts_with("inner TLS with cdn.signal.org: its ")
                && wrong.ends_with("; answered by CN=chat.signal.org, issued by CN=Signal CA"),
            "{wrong}"
        );
    }

    #[test]
    fn the_summary_counts_and_explains_unverified_chains() {
        let two = ["a.signal.org".to_owned(), "b.signal.org".to_owned()];
        let all = [Ok(answer(Chain::Verified)), Ok(answer(Chain::Verified))];
        assert_eq!(
            summary("p.example.org", &two, &all),
            "Signal relay on p.example.org: works for all 2 hosts.\n"
        );
        let mixed = [
            Ok(answer(Chain::NotVerified)),
            Err(Failure::Timeout(Step::InnerTls)),
        ];
        let text = summary("p.example.org", &two, &mixed);
        assert!(
            text.starts_with("Signal relay on p.example.org: works for 1 of 2 hosts; 1 failed.\n"),
            "{text}"
        );
        assert!(text.contains("--inner-ca FILE"), "{text}");
        let none = [
            Err(Failure::Timeout(Step::InnerTls)),
            Err(Failure::Timeout(Step::Tcp)),
        ];
        assert_eq!(
            summary("p.example.org", &two, &none),
            "Signal relay on p.example.org: works for none of the 2 hosts.\n"
        );
        let one = ["a.signal.org".to_owned()];
        assert_eq!(
            summary("p.example.org", &one, &all[..1]),
            "Signal relay on p.example.org: works for a.signal.org.\n"
        );
        assert_eq!(
            summary("p.example.org", &one, &none[..1]),
            "Signal relay on p.example.org: does not work for a.signal.org.\n"
        );
    }
}
