use std::collections::HashMap;

use super::*;
use crate::transport::Transport;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

fn server(s: &str) -> Option<ServerAddr> {
    Some(ServerAddr::parse(s).unwrap())
}

fn full(server_addr: &str, dir: &str) -> Layer {
    Layer {
        server: server(server_addr),
        server_name: None,
        cert: Some(PathBuf::from(format!("{dir}/c.pem"))),
        key: Some(PathBuf::from(format!("{dir}/c.key"))),
        ca: Some(PathBuf::from(format!("{dir}/ca.pem"))),
        peer_ca: None,
        connect_timeout: Some(Duration::from_secs(3)),
        transport: None,
        stealth: None,
    }
}

#[test]
fn flags_beat_env_beat_file() {
    let file = full("file.example:443", "/file");
    let env = Layer {
        server: server("env.example:8443"),
        key: Some("/env/c.key".into()),
        ..Layer::default()
    };
    let flags = Layer {
        server: server("flag.example:9443"),
        ..Layer::default()
    };
    let s = resolve(file, env, flags, None).unwrap();
    assert_eq!(s.server, ServerAddr::parse("flag.example:9443").unwrap());
    assert_eq!(s.key, PathBuf::from("/env/c.key"));
    assert_eq!(s.cert, PathBuf::from("/file/c.pem"));
    assert_eq!(s.connect_timeout, Duration::from_secs(3));
    assert_eq!(s.server_name, ServerName::try_from("flag.example").unwrap());
}

#[test]
fn defaults_for_timeout_and_server_name() {
    let mut layer = full("10.1.2.3:443", "/d");
    layer.connect_timeout = None;
    let s = resolve(Layer::default(), layer, Layer::default(), None).unwrap();
    assert_eq!(s.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(s.server_name, ServerName::try_from("10.1.2.3").unwrap());

    let flags = Layer {
        server_name: Some("tp.example.org".into()),
        ..Layer::default()
    };
    let s = resolve(full("10.1.2.3:443", "/d"), Layer::default(), flags, None).unwrap();
    assert_eq!(
        s.server_name,
        ServerName::try_from("tp.example.org").unwrap()
    );

    let ip: std::net::IpAddr = "10.9.9.9".parse().unwrap();
    let flags = Layer {
        server_name: Some(ip.to_string()),
        ..Layer::default()
    };
    let s = resolve(full("tp.example.org", "/d"), Layer::default(), flags, None).unwrap();
    assert_eq!(s.server_name, ServerName::IpAddress(ip.into()));

    let flags = Layer {
        server_name: Some("bad name".into()),
        ..Layer::default()
    };
    let err = resolve(full("tp.example.org", "/d"), Layer::default(), flags, None).unwrap_err();
    assert!(matches!(err, ConfigError::ServerName(_)), "{err:?}");
}

#[test]
fn missing_settings_name_all_three_ways() {
    let err = resolve(
        Layer {
            cert: Some("/c.pem".into()),
            ..Layer::default()
        },
        Layer::default(),
        Layer::default(),
        Some(Path::new("/home/a/.config/tp/config.toml")),
    )
    .unwrap_err();
    let ConfigError::Missing { missing, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(missing, &[SERVER, KEY, CA]);
    let text = err.to_string();
    for needle in [
        "set `server` in /home/a/.config/tp/config.toml, or TP_SERVER, or --server",
        "TP_KEY",
        "--ca",
    ] {
        assert!(text.contains(needle), "{text}");
    }
    assert!(!text.contains("TP_CERT"), "{text}");
}

#[test]
fn env_layer_reads_every_variable_and_ignores_empty_ones() {
    let get = env(&[
        ("HOME", "/home/a"),
        ("TP_SERVER", "tp.example.org"),
        ("TP_SERVER_NAME", "edge.example.org"),
        ("TP_CERT", "~/tp/alice.pem"),
        ("TP_KEY", "rel/alice.key"),
        ("TP_CA", ""),
        ("TP_CONNECT_TIMEOUT", "2s"),
    ]);
    let layer = env_layer(&get).unwrap();
    assert_eq!(layer.server, server("tp.example.org:443"));
    assert_eq!(layer.server_name.as_deref(), Some("edge.example.org"));
    assert_eq!(layer.cert, Some("/home/a/tp/alice.pem".into()));
    assert_eq!(layer.key, Some("rel/alice.key".into()));
    assert_eq!(layer.ca, None);
    assert_eq!(layer.connect_timeout, Some(Duration::from_secs(2)));

    let err = env_layer(&env(&[("TP_CONNECT_TIMEOUT", "10")])).unwrap_err();
    assert!(err.to_string().starts_with("TP_CONNECT_TIMEOUT: "), "{err}");
    let err = env_layer(&env(&[("TP_SERVER", "a:0")])).unwrap_err();
    assert!(err.to_string().starts_with("TP_SERVER: "), "{err}");
}

#[test]
fn config_path_precedence() {
    let get = env(&[("HOME", "/home/a")]);
    assert_eq!(
        config_path(None, &get),
        Some(ConfigPath {
            path: "/home/a/.config/tp/config.toml".into(),
            explicit: false
        })
    );
    let get = env(&[("HOME", "/home/a"), ("XDG_CONFIG_HOME", "/xdg")]);
    assert_eq!(
        config_path(None, &get).unwrap().path,
        PathBuf::from("/xdg/tp/config.toml")
    );
    let get = env(&[("HOME", "/home/a"), ("TP_CONFIG", "~/tp.toml")]);
    assert_eq!(
        config_path(None, &get),
        Some(ConfigPath {
            path: "/home/a/tp.toml".into(),
            explicit: true
        })
    );
    let flag = config_path(Some(Path::new("/etc/tp/client.toml")), &get).unwrap();
    assert_eq!(flag.path, PathBuf::from("/etc/tp/client.toml"));
    assert!(flag.explicit);
    assert_eq!(config_path(None, &env(&[])), None);
}

#[test]
fn file_paths_are_relative_to_the_file() {
    let text = r#"
server = "tp.example.org:8443"
server_name = "edge.example.org"
cert = "alice.pem"
key = "~/keys/alice.key"
ca = "/etc/tp/ca.pem"
connect_timeout = "5s"
"#;
    let layer = parse_file(
        text,
        Path::new("/home/a/.config/tp/config.toml"),
        Some(Path::new("/home/a")),
    )
    .unwrap();
    assert_eq!(layer.server, server("tp.example.org:8443"));
    assert_eq!(layer.server_name.as_deref(), Some("edge.example.org"));
    assert_eq!(layer.cert, Some("/home/a/.config/tp/alice.pem".into()));
    assert_eq!(layer.key, Some("/home/a/keys/alice.key".into()));
    assert_eq!(layer.ca, Some("/etc/tp/ca.pem".into()));
    assert_eq!(layer.connect_timeout, Some(Duration::from_secs(5)));
}

#[test]
fn file_errors_carry_file_and_line() {
    let path = Path::new("/etc/tp/client.toml");
    let cases = [
        (
            "server = \"a\"\nsrever = \"b\"\n",
            ":2:1: ",
            "unknown field `srever`",
        ),
        ("server = \"a\"\n\nconnect_timeout = 10\n", ":3:", "string"),
        ("connect_timeout = \"10\"\n", ":1:19: ", "connect_timeout"),
        ("\nserver = \"a:0\"\n", ":2:10: ", "server: "),
        ("server = [\n", ":", ""),
    ];
    for (text, location, message) in cases {
        let err = parse_file(text, path, None).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("/etc/tp/client.toml{location}")),
            "{text:?}: {shown}"
        );
        assert!(shown.contains(message), "{text:?}: {shown}");
        assert!(!shown.contains('\n'), "one line: {shown}");
    }
}

#[test]
fn load_reads_the_file_and_reports_a_missing_explicit_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "server = \"file.example\"\ncert = \"c.pem\"\nkey = \"c.key\"\nca = \"ca.pem\"\n",
    )
    .unwrap();
    let get = env(&[("TP_SERVER", "env.example:1443")]);
    let s = load(Layer::default(), Some(&path), &get).unwrap();
    assert_eq!(s.server, ServerAddr::parse("env.example:1443").unwrap());
    assert_eq!(s.cert, dir.path().join("c.pem"));

    let missing = dir.path().join("nope.toml");
    let err = load(Layer::default(), Some(&missing), &env(&[])).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    let err = load(
        Layer::default(),
        None,
        &env(&[("TP_CONFIG", missing.to_str().unwrap())]),
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");

    // A missing default file is fine: everything can come from the environment.
    let home = dir.path().to_str().unwrap();
    let get = env(&[
        ("HOME", home),
        ("TP_SERVER", "tp.example.org"),
        ("TP_CERT", "c.pem"),
        ("TP_KEY", "c.key"),
        ("TP_CA", "ca.pem"),
    ]);
    let s = load(Layer::default(), None, &get).unwrap();
    assert_eq!(s.server.port, 443);
}

#[test]
fn stealth_from_file_env_and_flags_means_tls_over_tcp() {
    let base = full("tp.example.org", "/d");
    let s = resolve(base.clone(), Layer::default(), Layer::default(), None).unwrap();
    assert!(!s.stealth, "off by default");
    assert_eq!(s.transport, Transport::Auto);

    let path = Path::new("/etc/tp/client.toml");
    let file = parse_file("stealth = true\n", path, None).unwrap();
    assert_eq!(file.stealth, Some(true));
    let file = Layer {
        stealth: file.stealth,
        ..base.clone()
    };
    let s = resolve(file.clone(), Layer::default(), Layer::default(), None).unwrap();
    assert!(s.stealth);
    assert_eq!(s.transport, Transport::Tcp, "stealth runs over TLS/TCP");

    let off = env_layer(&env(&[("TP_STEALTH", "0")])).unwrap();
    let s = resolve(file.clone(), off, Layer::default(), None).unwrap();
    assert!(!s.stealth, "the environment beats the file");
    let on = env_layer(&env(&[("TP_STEALTH", "TRUE")])).unwrap();
    assert_eq!(on.stealth, Some(true));
    let err = env_layer(&env(&[("TP_STEALTH", "maybe")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "TP_STEALTH: \"maybe\" is not a switch: expected 1 or 0 (true or false)"
    );

    let quic = Layer {
        transport: Some(Transport::Quic),
        stealth: Some(true),
        ..Layer::default()
    };
    let err = resolve(base, Layer::default(), quic, None).unwrap_err();
    assert!(matches!(err, ConfigError::StealthOverQuic), "{err}");
    assert!(err.to_string().contains("TLS/TCP only"), "{err}");
    let err = parse_file("stealth = \"yes\"\n", path, None).unwrap_err();
    assert!(
        err.to_string().starts_with("/etc/tp/client.toml:1:11:"),
        "{err}"
    );
}

#[test]
fn transport_from_file_env_and_flags() {
    let file = Layer {
        transport: Some(Transport::Tcp),
        ..full("tp.example.org", "/d")
    };
    let s = resolve(file.clone(), Layer::default(), Layer::default(), None).unwrap();
    assert_eq!(s.transport, Transport::Tcp);
    let from_env = env_layer(&env(&[("TP_TRANSPORT", "quic")])).unwrap();
    let s = resolve(file.clone(), from_env.clone(), Layer::default(), None).unwrap();
    assert_eq!(s.transport, Transport::Quic);
    let flags = Layer {
        transport: Some(Transport::Auto),
        ..Layer::default()
    };
    let s = resolve(file, from_env, flags, None).unwrap();
    assert_eq!(s.transport, Transport::Auto);
    let s = resolve(
        full("tp.example.org", "/d"),
        Layer::default(),
        Layer::default(),
        None,
    )
    .unwrap();
    assert_eq!(s.transport, Transport::Auto, "the default");

    let err = env_layer(&env(&[("TP_TRANSPORT", "udp")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "TP_TRANSPORT: \"udp\" is not a transport: expected auto, quic or tcp"
    );
    assert_eq!(
        env_layer(&env(&[("TP_TRANSPORT", "")])).unwrap().transport,
        None
    );

    let path = Path::new("/etc/tp/client.toml");
    let layer = parse_file("transport = \"quic\"\n", path, None).unwrap();
    assert_eq!(layer.transport, Some(Transport::Quic));
    let err = parse_file("server = \"a\"\ntransport = \"udp\"\n", path, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/tp/client.toml:2:13: transport: \"udp\" is not a transport: expected auto, quic or tcp"
    );
}

#[test]
fn cache_path_follows_xdg() {
    assert_eq!(
        cache_path(&env(&[("HOME", "/home/a")])),
        Some(PathBuf::from("/home/a/.cache/tp/transport"))
    );
    assert_eq!(
        cache_path(&env(&[("HOME", "/home/a"), ("XDG_CACHE_HOME", "/xdg")])),
        Some(PathBuf::from("/xdg/tp/transport"))
    );
    // A relative XDG_CACHE_HOME is ignored, as the spec says.
    assert_eq!(
        cache_path(&env(&[("HOME", "/home/a"), ("XDG_CACHE_HOME", "rel")])),
        Some(PathBuf::from("/home/a/.cache/tp/transport"))
    );
    assert_eq!(cache_path(&env(&[])), None);

    let get = env(&[
        ("HOME", "/home/a"),
        ("TP_SERVER", "tp.example.org"),
        ("TP_CERT", "c.pem"),
        ("TP_KEY", "c.key"),
        ("TP_CA", "ca.pem"),
    ]);
    let s = load(Layer::default(), None, &get).unwrap();
    assert_eq!(
        s.cache_file,
        Some(PathBuf::from("/home/a/.cache/tp/transport"))
    );
}

#[test]
fn peer_ca_defaults_to_ca_and_has_all_three_ways() {
    let s = resolve(
        full("tp.example.org", "/d"),
        Layer::default(),
        Layer::default(),
        None,
    )
    .unwrap();
    assert_eq!(s.peer_ca, PathBuf::from("/d/ca.pem"), "the default is ca");

    let path = Path::new("/etc/tp/client.toml");
    let file = parse_file("peer_ca = \"peers.pem\"\n", path, None).unwrap();
    assert_eq!(file.peer_ca, Some("/etc/tp/peers.pem".into()));
    let s = resolve(
        Layer {
            peer_ca: file.peer_ca.clone(),
            ..full("tp.example.org", "/d")
        },
        Layer::default(),
        Layer::default(),
        None,
    )
    .unwrap();
    assert_eq!(s.peer_ca, PathBuf::from("/etc/tp/peers.pem"));

    let from_env = env_layer(&env(&[("HOME", "/home/a"), ("TP_PEER_CA", "~/p.pem")])).unwrap();
    assert_eq!(from_env.peer_ca, Some("/home/a/p.pem".into()));
    let flags = Layer {
        peer_ca: Some("/flag/p.pem".into()),
        ..Layer::default()
    };
    let s = resolve(full("tp.example.org", "/d"), from_env, flags, None).unwrap();
    assert_eq!(s.peer_ca, PathBuf::from("/flag/p.pem"));
    assert!(SETTINGS.contains(&PEER_CA));
}
