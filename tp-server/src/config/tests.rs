//! One broken config per rule, under `tp-server/tests/fixtures/config/`. Each fixture's
//! first line is `# expect: TEXT`: the error must contain `server.toml:TEXT`-style
//! location text (or just TEXT when it names another file), or the file must load
//! when TEXT is `ok`. And the `[quic]` keys, followed into quinn's configuration.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tp_net::quic::QuicLimits;

use super::Config;
use crate::pki::{Ca, LeafSpec, Validity};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

/// Writes the files fixtures refer to into `dir`.
fn write_support_files(dir: &Path) {
    let now = SystemTime::now();
    let ca = Ca::generate(
        "test CA",
        Validity::for_ttl(now, Duration::from_secs(86_400)),
    )
    .unwrap();
    let validity = Validity::for_ttl(now, Duration::from_secs(3_600));
    let server = ca
        .issue(&LeafSpec::server(
            vec!["localhost".into()],
            vec![],
            validity,
        ))
        .unwrap();
    server.save(dir, "server").unwrap();
    let other = ca.issue(&LeafSpec::client("other@test", validity)).unwrap();
    other.save(dir, "other").unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
    let ca_der = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap()
    };
    let ca_serial = crate::pki::serial_hex(&ca_der).unwrap();
    std::fs::write(dir.join("revoked-ca.txt"), format!("{ca_serial}\n")).unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        "[[rule]]\nname = \"r\"\nwho = [\"*\"]\nconnect = [\"10.0.0.0/8\"]\nports = [22]\n",
    )
    .unwrap();
    std::fs::write(dir.join("broken-policy.toml"), "[[rule]]\nname = 1\n").unwrap();
    std::fs::write(dir.join("revoked.txt"), "# none yet\n01:02:03\n").unwrap();
    std::fs::write(dir.join("bad-revoked.txt"), "0102\nnot a serial\n").unwrap();
}

#[test]
fn every_fixture_gives_its_documented_result() {
    let tmp = tempfile::tempdir().unwrap();
    write_support_files(tmp.path());
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for fixture in entries {
        let text = std::fs::read_to_string(&fixture).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", fixture.display()));
        let path = tmp.path().join("server.toml");
        std::fs::write(&path, &text).unwrap();
        let result = Config::load(&path);
        let name = fixture.file_name().unwrap().to_string_lossy().into_owned();
        match (expect, result) {
            ("ok", Ok(config)) => {
                assert_eq!(
                    config.limits.hello_timeout,
                    Duration::from_secs(90),
                    "{name}"
                );
                assert_eq!(
                    config.limits.connect_timeout,
                    Duration::from_millis(500),
                    "{name}"
                );
                assert_eq!(config.limits.max_connections.get(), 100, "{name}");
                assert_eq!(config.tls.revoked.len(), 1, "{name}");
            }
            ("ok", Err(e)) => panic!("{name}: expected to load, got: {e}"),
            (expect, Ok(_)) => {
                panic!("{name}: expected an error containing {expect:?}, but it loaded")
            }
            (expect, Err(e)) => {
                let message = e.to_string();
                let located = format!("server.toml:{expect}");
                assert!(
                    message.contains(&located)
                        || (!expect.starts_with(|c: char| c.is_ascii_digit())
                            && message.contains(expect)),
                    "{name}: expected {expect:?} in: {message}"
                );
            }
        }
        seen += 1;
    }
    assert!(seen >= 12, "fixtures missing: saw {seen}");
}

#[test]
fn stealth_names_are_lowercase_server_names_or_a_lone_star() {
    let tmp = tempfile::tempdir().unwrap();
    write_support_files(tmp.path());
    let base = "listen = \"127.0.0.1:8443\"\npolicy = \"policy.toml\"\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\nclient_ca = \"ca.pem\"\n";
    let path = tmp.path().join("server.toml");
    let load = |stealth: &str| {
        std::fs::write(&path, format!("{base}{stealth}")).unwrap();
        Config::load(&path).unwrap().stealth
    };
    assert!(!load("").enabled());
    let some = load("[stealth]\nnames = [\"WWW.Example.org\", \"*.example.net\"]\n");
    assert_eq!(some.names, ["www.example.org", "*.example.net"]);
    assert!(!some.everywhere());
    assert!(load("[stealth]\nnames = [\"*\"]\n").everywhere());
}

/// Every `[quic]` key lands in [`QuicLimits`], and from there in the transport
/// configuration of the server's quinn endpoint (what `run` builds).
#[test]
fn quic_settings_reach_the_quinn_server_config() {
    let tmp = tempfile::tempdir().unwrap();
    write_support_files(tmp.path());
    let path = tmp.path().join("server.toml");
    let base = "listen = \"127.0.0.1:8443\"\npolicy = \"policy.toml\"\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\nclient_ca = \"ca.pem\"\n";
    std::fs::write(
        &path,
        format!(
            "{base}[quic]\nmax_streams_per_connection = 20\nstream_window = 123456\nconnection_window = 2345678\ndatagram_buffer = 34567\nidle_timeout = \"4321ms\"\nkeep_alive = \"1234ms\"\n"
        ),
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(
        config.quic.limits,
        QuicLimits {
            max_streams: 20,
            stream_window: 123_456,
            connection_window: 2_345_678,
            datagram_buffer: 34_567,
            idle_timeout: Duration::from_millis(4_321),
            keep_alive: Some(Duration::from_millis(1_234)),
        }
    );
    let tls = crate::tls::server_config(&config.tls).unwrap();
    let quic = crate::tls::quic_server_config(tls, &config.quic.limits).unwrap();
    let transport = format!("{:?}", quic.transport);
    for field in [
        // Under the first grant (32), so granted at once; a larger limit is
        // reached by growing (tests/e2e/quic.rs).
        "max_concurrent_bidi_streams: 20,",
        "stream_receive_window: 123456,",
        "receive_window: 2345678,",
        "datagram_receive_buffer_size: Some(34567),",
        "keep_alive_interval: Some(1.234s),",
        "max_idle_timeout: Some(4321),",
    ] {
        assert!(transport.contains(field), "{field:?} not in {transport}");
    }

    // "off" turns keep-alives off; absent keys keep the defaults.
    std::fs::write(&path, format!("{base}[quic]\nkeep_alive = \"off\"\n")).unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(
        config.quic.limits,
        QuicLimits {
            keep_alive: None,
            ..QuicLimits::default()
        }
    );
}

#[test]
fn client_ca_may_be_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    write_support_files(tmp.path());
    let path = tmp.path().join("server.toml");
    let text = "listen = \"127.0.0.1:8443\"\npolicy = \"policy.toml\"\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n\n[signal]\nenabled = true\n\n[[terminate]]\nname = \"dot\"\nlisten = [\"127.0.0.1:8853\"]\nbackend = \"127.0.0.1:53\"\n";
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    assert!(!config.tls.has_client_ca());
    let route = &config.terminate[0];
    assert_eq!(route.name.as_deref(), Some("dot"));
    assert_eq!(route.listen, ["127.0.0.1:8853".parse().unwrap()]);
    assert!(!route.client_cert);
    // The tunnel configuration still builds: it trusts no client certificate.
    crate::tls::server_config(&config.tls).unwrap();
}
