//! Reading a TLS ClientHello from bytes as they arrive, with rustls's own
//! parser ([`Acceptor`]), fed only the new bytes each time: a large hello
//! (post-quantum key shares), split over several TCP segments or TLS records,
//! parses as a whole, and no byte is parsed twice.

use rustls::server::{Acceptor, ClientHello};

/// What the bytes so far are.
pub(crate) enum Hello {
    /// Not a complete ClientHello yet: feed more.
    Partial,
    /// A complete ClientHello: its server name (lowercase).
    Complete { sni: Option<String> },
    /// Not TLS, or not a ClientHello that rustls accepts.
    NotTls,
}

/// An incremental ClientHello reader.
#[derive(Default)]
pub(crate) struct HelloReader {
    acceptor: Acceptor,
}

impl HelloReader {
    /// Feeds the next bytes (the ones not fed before).
    pub(crate) fn feed(&mut self, mut new: &[u8]) -> Hello {
        loop {
            match self.acceptor.accept() {
                Ok(Some(accepted)) => return complete(&accepted.client_hello()),
                Ok(None) => {}
                Err(_) => return Hello::NotTls,
            }
            if new.is_empty() {
                return Hello::Partial;
            }
            if self.acceptor.read_tls(&mut new).is_err() {
                return Hello::NotTls;
            }
        }
    }
}

fn complete(hello: &ClientHello<'_>) -> Hello {
    Hello::Complete {
        sni: hello.server_name().map(str::to_ascii_lowercase),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A real ClientHello from rustls, padded past one TLS record with a long
    /// ALPN list, split into its records as a client may send them.
    fn big_hello(name: &str) -> Vec<u8> {
        let mut config = rustls::ClientConfig::builder_with_provider(tp_net::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = (0..200)
            .map(|i| format!("proto-{i:0>100}").into_bytes())
            .collect();
        let mut conn =
            rustls::ClientConnection::new(Arc::new(config), name.to_owned().try_into().unwrap())
                .unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn a_hello_larger_than_a_record_parses_fed_in_small_pieces() {
        let hello = big_hello("chat.signal.org");
        assert!(hello.len() > 20_000, "{} bytes", hello.len());
        let mut reader = HelloReader::default();
        let mut result = Hello::Partial;
        for piece in hello.chunks(1000) {
            result = reader.feed(piece);
            if !matches!(result, Hello::Partial) {
                break;
            }
        }
        match result {
            Hello::Complete { sni } => assert_eq!(sni.as_deref(), Some("chat.signal.org")),
            _ => panic!("not parsed"),
        }
    }

    #[test]
    fn other_bytes_are_not_tls() {
        let mut reader = HelloReader::default();
        assert!(matches!(
            reader.feed(b"GET / HTTP/1.1\r\n\r\n"),
            Hello::NotTls
        ));
    }
}
