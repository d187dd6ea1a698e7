//! The inner handshake over an in-memory pipe: the caller (bob) and the
//! exposing side (alice), with and without `--allow`, and foreign CAs.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

use super::*;
use crate::testutil::{Pki, e2e_config};

type Accepted = Result<(server::TlsStream<DuplexStream>, Identity), (AcceptError, DuplexStream)>;

/// Runs both ends over one pipe; the exposing side answers one line.
async fn handshake(
    caller: &E2eConfig,
    exposer: &E2eConfig,
    allow: &[&str],
    from: Option<&str>,
    groups: &[&str],
) -> (
    Result<(client::TlsStream<DuplexStream>, Identity), E2eError>,
    Accepted,
) {
    let (a, b) = duplex(64 * 1024);
    let allow = AllowList::new(
        allow
            .iter()
            .map(|p| AllowPattern::parse(p).unwrap())
            .collect(),
    );
    let exposer = exposer.clone();
    let from = from.map(str::to_owned);
    let groups = groups.iter().map(|g| g.to_string()).collect();
    let serving = tokio::spawn(async move {
        let accepted = exposer.accept(b, allow, from, groups).await;
        match accepted {
            Ok((mut tls, identity)) => {
                tls.write_all(b"hello from alice\n").await.unwrap();
                tls.flush().await.unwrap();
                Ok((tls, identity))
            }
            Err((e, mut stream)) => {
                // Closed in order, so the alert arrives.
                let _ = stream.shutdown().await;
                Err((e, stream))
            }
        }
    });
    let connected = tokio::time::timeout(Duration::from_secs(10), caller.connect(a))
        .await
        .expect("the handshake ends");
    (connected, serving.await.unwrap())
}

#[tokio::test]
async fn both_sides_verify_each_other_and_bytes_flow() {
    let pki = Pki::new("test CA");
    let alice = e2e_config(&pki.client, &pki);
    let bob = e2e_config(&pki.bob, &pki);
    let (connected, accepted) = handshake(&bob, &alice, &[], Some("bob@corp"), &[]).await;
    let (mut caller, exposer_id) = connected.unwrap();
    assert_eq!(exposer_id.as_str(), "alice@corp");
    let (mut exposer, caller_id) = accepted.unwrap();
    assert_eq!(caller_id.as_str(), "bob@corp");
    let mut line = [0u8; 17];
    caller.read_exact(&mut line).await.unwrap();
    assert_eq!(&line, b"hello from alice\n");
    caller.write_all(b"hi").await.unwrap();
    caller.shutdown().await.unwrap();
    let mut got = Vec::new();
    exposer.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"hi");
}

#[tokio::test]
async fn allow_patterns_let_in_and_refuse_by_identity() {
    let pki = Pki::new("test CA");
    let alice = e2e_config(&pki.client, &pki);
    let bob = e2e_config(&pki.bob, &pki);
    for (allow, groups) in [
        (&["bob@corp"][..], &[][..]),
        (&["carol@corp", "*@corp"][..], &[][..]),
        (&["group:ops"][..], &["ops"][..]),
    ] {
        let (connected, accepted) = handshake(&bob, &alice, allow, Some("bob@corp"), groups).await;
        assert!(connected.is_ok(), "{allow:?}: {connected:?}");
        assert!(accepted.is_ok(), "{allow:?}");
    }
    for (allow, from, groups) in [
        (&["carol@corp"][..], Some("bob@corp"), &["ops"][..]),
        (&["group:ops"][..], Some("bob@corp"), &["dev"][..]),
        // The server's groups were for someone else.
        (&["group:ops"][..], Some("carol@corp"), &["ops"][..]),
    ] {
        let (connected, accepted) = handshake(&bob, &alice, allow, from, groups).await;
        assert_eq!(connected.unwrap_err(), E2eError::Refused, "{allow:?}");
        match accepted {
            Err((AcceptError::NotAllowed { identity }, _)) => assert_eq!(identity, "bob@corp"),
            other => panic!("{allow:?}: {:?}", other.map(|(_, id)| id)),
        }
    }
    assert_eq!(
        E2eError::Refused.to_string(),
        "the exposing side refused your certificate (--allow)"
    );
}

#[tokio::test]
async fn a_caller_whose_certificate_is_not_the_identity_the_server_checked_is_refused() {
    let pki = Pki::new("test CA");
    let alice = e2e_config(&pki.client, &pki);
    let bob = e2e_config(&pki.bob, &pki);
    // The server let carol through; inside the tunnel bob's certificate shows
    // up (a stolen or revoked one, never checked by the server): refused even
    // with no --allow at all.
    for allow in [&[][..], &["bob@corp"][..]] {
        let (connected, accepted) = handshake(&bob, &alice, allow, Some("carol@corp"), &[]).await;
        assert_eq!(connected.unwrap_err(), E2eError::Refused, "{allow:?}");
        match accepted {
            Err((AcceptError::NotAllowed { identity }, _)) => assert_eq!(identity, "bob@corp"),
            other => panic!("{allow:?}: {:?}", other.map(|(_, id)| id)),
        }
    }
}

#[tokio::test]
async fn certificates_from_another_ca_are_refused_both_ways() {
    let pki = Pki::new("test CA");
    let foreign = Pki::new("foreign CA");
    let alice = e2e_config(&pki.client, &pki);
    // A caller whose certificate alice's peer_ca did not issue.
    let mallory = e2e_config(&foreign.bob, &pki);
    let (connected, accepted) = handshake(&mallory, &alice, &[], None, &[]).await;
    assert!(
        matches!(connected, Err(E2eError::NotTrusted(_))),
        "{connected:?}"
    );
    assert!(
        matches!(accepted, Err((AcceptError::Handshake(_), _))),
        "the exposing side refuses it"
    );

    // An exposing side whose certificate bob's peer_ca did not issue.
    let bob = e2e_config(&pki.bob, &pki);
    let impostor = e2e_config(&foreign.client, &foreign);
    let (connected, accepted) = handshake(&bob, &impostor, &[], None, &[]).await;
    let err = connected.unwrap_err();
    assert!(matches!(err, E2eError::PeerCertificate(_)), "{err:?}");
    assert!(err.to_string().contains("not trusted"), "{err}");
    assert!(accepted.is_err());
}

#[tokio::test]
async fn a_server_certificate_is_not_a_peer_certificate() {
    // tp certificates are client certificates: a serverAuth-only leaf from
    // the right CA does not pass as the exposing side.
    let pki = Pki::new("test CA");
    let bob = e2e_config(&pki.bob, &pki);
    let server_leaf = e2e_config(&pki.server, &pki);
    let (connected, _) = handshake(&bob, &server_leaf, &[], None, &[]).await;
    assert!(
        matches!(connected, Err(E2eError::PeerCertificate(_))),
        "{connected:?}"
    );
}

#[tokio::test]
async fn a_peer_that_closes_mid_handshake_is_closed() {
    let pki = Pki::new("test CA");
    let bob = e2e_config(&pki.bob, &pki);
    let (a, mut b) = duplex(64 * 1024);
    tokio::spawn(async move {
        let mut hello = [0u8; 16];
        let _ = b.read(&mut hello).await;
        drop(b);
    });
    let err = bob.connect(a).await.unwrap_err();
    assert_eq!(err, E2eError::Closed);
}
