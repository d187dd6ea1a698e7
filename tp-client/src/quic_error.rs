//! Turning QUIC connection errors into messages as clear as the TLS/TCP ones.
//!
//! Inside QUIC, a TLS failure travels as a CONNECTION_CLOSE whose code is
//! `0x100 + alert` (RFC 9001, section 4.8). Closed by the server, it means the
//! server refused the handshake (usually our certificate); raised by our own
//! TLS stack, it means we refused the server (usually its certificate). quinn
//! keeps only the text of our own rustls error, so the hint for that case comes
//! from the alert code and that text.

use std::io;

use quinn::{ConnectionError, TransportErrorCode};
use rustls::AlertDescription;

use crate::addr::ServerAddr;
use crate::connect::ConnectError;
use crate::tls_error::{EXPIRED, NO_ALPN, NOT_YET_VALID, UNTRUSTED, WRONG_NAME, describe_tls};

/// The TLS alert a QUIC transport error code carries, if it is one.
fn tls_alert(code: TransportErrorCode) -> Option<AlertDescription> {
    let code = u64::from(code);
    let alert = code.checked_sub(0x100).and_then(|a| u8::try_from(a).ok())?;
    Some(AlertDescription::from(alert))
}

/// What our own TLS stack's alert says about the server.
fn local_alert_hint(alert: AlertDescription, reason: &str) -> &'static str {
    let squashed: String = reason
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    match alert {
        AlertDescription::UnknownCA | AlertDescription::DecryptError => UNTRUSTED,
        AlertDescription::BadCertificate if squashed.contains("notvalidforname") => WRONG_NAME,
        AlertDescription::CertificateExpired if squashed.contains("notvalidyet") => NOT_YET_VALID,
        AlertDescription::CertificateExpired => EXPIRED,
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateUnknown => "server certificate rejected",
        AlertDescription::NoApplicationProtocol => NO_ALPN,
        AlertDescription::ProtocolVersion => "server does not speak TLS 1.3",
        _ => "TLS error",
    }
}

/// What the server's application close codes mean (docs/protocol.md, QUIC).
fn close_code_hint(code: u64) -> &'static str {
    match code {
        1 => ": it is shutting down, try again later",
        2 => ": our client certificate was revoked",
        3 => ": it found no usable identity in our client certificate",
        _ => "",
    }
}

/// The [`ConnectError`] for a failed or lost QUIC connection to `server`.
pub(crate) fn connect_error(server: &ServerAddr, e: &ConnectionError) -> ConnectError {
    let quic = |reason: String| ConnectError::Quic {
        server: server.clone(),
        reason,
    };
    let handshake = |reason: String| ConnectError::Handshake {
        server: server.clone(),
        reason,
    };
    match e {
        ConnectionError::ConnectionClosed(close) => {
            if let Some(alert) = tls_alert(close.error_code) {
                return handshake(describe_tls(&rustls::Error::AlertReceived(alert)));
            }
        }
        ConnectionError::TransportError(error) => {
            if let Some(alert) = tls_alert(error.code) {
                return handshake(format!(
                    "{}: {}",
                    local_alert_hint(alert, &error.reason),
                    error.reason
                ));
            }
        }
        _ => {}
    }
    quic(lost_reason(e))
}

/// Why a QUIC connection failed or was lost, other than TLS, in plain words.
pub(crate) fn lost_reason(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionClosed(close) => {
            format!("the server aborted the connection: {close}")
        }
        ConnectionError::TransportError(error) => format!("protocol error: {error}"),
        ConnectionError::ApplicationClosed(close) => {
            let reason = String::from_utf8_lossy(&close.reason);
            format!(
                "the server closed the connection (code {}{}{}){}",
                close.error_code,
                if reason.is_empty() { "" } else { ": " },
                crate::connect::one_line(&reason),
                close_code_hint(close.error_code.into_inner())
            )
        }
        ConnectionError::Reset => "the server reset the connection (did it restart?)".into(),
        ConnectionError::TimedOut => {
            "timed out: nothing heard from the server for the idle timeout".into()
        }
        ConnectionError::VersionMismatch => "the server does not speak QUIC version 1".into(),
        ConnectionError::LocallyClosed => "closed by tp".into(),
        ConnectionError::CidsExhausted => "out of connection IDs".into(),
    }
}

/// Why an open QUIC tunnel broke, in plain words, if `e` is a QUIC stream
/// error: the server aborted the stream, or the connection was lost.
pub(crate) fn tunnel_broke(e: &io::Error) -> Option<String> {
    let inner = e.get_ref()?;
    let code = match (
        inner.downcast_ref::<quinn::ReadError>(),
        inner.downcast_ref::<quinn::WriteError>(),
    ) {
        (Some(quinn::ReadError::Reset(code)), _) | (_, Some(quinn::WriteError::Stopped(code))) => {
            Some(*code)
        }
        _ => None,
    };
    if let Some(code) = code {
        return Some(format!(
            "the server aborted the tunnel (QUIC code {code}): the target or the server failed"
        ));
    }
    let lost = connection_lost(e)?;
    Some(format!("the QUIC connection broke: {}", lost_reason(lost)))
}

/// The QUIC connection error inside an IO error from a stream, if there is one.
pub(crate) fn connection_lost(e: &io::Error) -> Option<&ConnectionError> {
    let inner = e.get_ref()?;
    if let Some(quinn::ReadError::ConnectionLost(lost)) = inner.downcast_ref::<quinn::ReadError>() {
        return Some(lost);
    }
    if let Some(quinn::WriteError::ConnectionLost(lost)) = inner.downcast_ref::<quinn::WriteError>()
    {
        return Some(lost);
    }
    None
}

/// Whether `e` says the server reset or stopped the tunnel's stream.
pub(crate) fn stream_refused(e: &io::Error) -> bool {
    let Some(inner) = e.get_ref() else {
        return false;
    };
    matches!(
        inner.downcast_ref::<quinn::ReadError>(),
        Some(quinn::ReadError::Reset(_))
    ) || matches!(
        inner.downcast_ref::<quinn::WriteError>(),
        Some(quinn::WriteError::Stopped(_))
    )
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use quinn::{ApplicationClose, ConnectionClose};

    use super::*;

    fn server() -> ServerAddr {
        ServerAddr::parse("tp.example.org:443").unwrap()
    }

    fn crypto(alert: AlertDescription) -> TransportErrorCode {
        TransportErrorCode::crypto(u8::from(alert))
    }

    #[test]
    fn a_server_alert_means_it_refused_our_certificate() {
        let e = ConnectionError::ConnectionClosed(ConnectionClose {
            error_code: crypto(AlertDescription::UnknownCA),
            frame_type: None,
            reason: Bytes::new(),
        });
        let err = connect_error(&server(), &e);
        assert!(matches!(err, ConnectError::Handshake { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("server refused our client certificate"),
            "{err}"
        );
    }

    #[test]
    fn our_own_alert_names_the_server_certificate() {
        // quinn keeps the alert and the text of our rustls error; the end-to-end
        // tests cover the TransportError around them.
        let hint = local_alert_hint;
        assert_eq!(
            hint(
                AlertDescription::UnknownCA,
                "invalid peer certificate: UnknownIssuer"
            ),
            UNTRUSTED
        );
        assert_eq!(
            hint(
                AlertDescription::BadCertificate,
                "invalid peer certificate: certificate not valid for name \"x\"; \
                 certificate is only valid for y"
            ),
            WRONG_NAME
        );
        assert_eq!(
            hint(
                AlertDescription::BadCertificate,
                "invalid peer certificate: NotValidForName"
            ),
            WRONG_NAME
        );
        assert_eq!(
            hint(
                AlertDescription::CertificateExpired,
                "invalid peer certificate: certificate not valid yet: ..."
            ),
            NOT_YET_VALID
        );
        assert_eq!(
            hint(AlertDescription::CertificateExpired, "certificate expired"),
            EXPIRED
        );
        assert_eq!(hint(AlertDescription::NoApplicationProtocol, ""), NO_ALPN);
    }

    #[test]
    fn other_failures_are_quic_errors_in_plain_words() {
        let closed = ConnectionError::ApplicationClosed(ApplicationClose {
            error_code: quinn::VarInt::from_u32(7),
            reason: Bytes::from_static(b"draining\n"),
        });
        let err = connect_error(&server(), &closed);
        assert!(matches!(err, ConnectError::Quic { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "QUIC connection to tp.example.org:443 failed: \
             the server closed the connection (code 7: draining\\n)"
        );
        let revoked = ConnectionError::ApplicationClosed(ApplicationClose {
            error_code: quinn::VarInt::from_u32(2),
            reason: Bytes::new(),
        });
        assert!(
            connect_error(&server(), &revoked)
                .to_string()
                .ends_with("(code 2): our client certificate was revoked"),
            "{}",
            connect_error(&server(), &revoked)
        );
        let reset = connect_error(&server(), &ConnectionError::Reset);
        assert!(reset.to_string().contains("did it restart?"), "{reset}");
        assert_eq!(
            tls_alert(TransportErrorCode::crypto(48)),
            Some(AlertDescription::UnknownCA)
        );
        assert_eq!(tls_alert(TransportErrorCode::PROTOCOL_VIOLATION), None);
    }
}
