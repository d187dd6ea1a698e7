//! Turning rustls errors into messages that say whose certificate was the problem.

use std::io;

use rustls::{AlertDescription, CertificateError};

/// The rustls error inside an IO error from tokio-rustls, if there is one.
pub(crate) fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Whether `e` is a TLS protocol error (as opposed to a plain socket error).
pub(crate) fn is_tls_error(e: &io::Error) -> bool {
    rustls_error(e).is_some()
}

/// A one-line explanation of a handshake failure: a hint saying which side's
/// certificate or setting is at fault, then the rustls error itself.
pub(crate) fn describe(e: &io::Error) -> String {
    match rustls_error(e) {
        Some(tls) => describe_tls(tls),
        None => e.to_string(),
    }
}

/// [`describe`] for a rustls error.
pub(crate) fn describe_tls(tls: &rustls::Error) -> String {
    let hint = match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => UNTRUSTED,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                WRONG_NAME
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => EXPIRED,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                NOT_YET_VALID
            }
            _ => "server certificate rejected",
        },
        rustls::Error::AlertReceived(alert) => received_alert_hint(*alert),
        rustls::Error::NoApplicationProtocol => NO_ALPN,
        _ => "TLS error",
    };
    format!("{hint}: {tls}")
}

/// The server's certificate does not chain to our CA.
pub(crate) const UNTRUSTED: &str =
    "server certificate not trusted (is --ca the CA that issued it?)";
/// The server's certificate is for other names.
pub(crate) const WRONG_NAME: &str =
    "server certificate not valid for the server name (see --server-name)";
/// The server's certificate has expired.
pub(crate) const EXPIRED: &str = "server certificate expired";
/// The server's certificate is not valid yet.
pub(crate) const NOT_YET_VALID: &str = "server certificate not yet valid (check the clock)";
/// The server does not speak tp.
pub(crate) const NO_ALPN: &str =
    "server does not offer ALPN tp/1 (not a tp server, or a stealth name there: try --stealth)";

/// What an alert from the server means.
pub(crate) fn received_alert_hint(alert: AlertDescription) -> &'static str {
    match alert {
        AlertDescription::CertificateRequired
        | AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateRevoked
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateUnknown
        | AlertDescription::UnknownCA
        | AlertDescription::AccessDenied => {
            "server refused our client certificate (expired, revoked, or not from its CA?)"
        }
        AlertDescription::NoApplicationProtocol => NO_ALPN,
        AlertDescription::ProtocolVersion => "server does not speak TLS 1.3",
        _ => "server sent a TLS alert",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(e: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn hints_name_the_guilty_certificate() {
        let untrusted = wrap(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert!(is_tls_error(&untrusted));
        assert!(describe(&untrusted).starts_with("server certificate not trusted"));
        let refused = wrap(rustls::Error::AlertReceived(AlertDescription::UnknownCA));
        assert!(describe(&refused).starts_with("server refused our client certificate"));
        let plain = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(!is_tls_error(&plain));
        assert_eq!(describe(&plain), plain.to_string());
    }
}
