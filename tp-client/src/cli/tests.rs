use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    parse_from(args.iter().copied())
}

fn connect(host: &str, port: u16) -> Command {
    Command::Connect {
        dest: Dest::Host(Host::parse(host).unwrap()),
        port,
    }
}

#[test]
fn clap_definition_is_consistent() {
    command().debug_assert();
}

#[test]
fn host_port_is_the_default_command() {
    assert_eq!(
        parse(&["tp", "db1.internal", "22"]).unwrap().command,
        connect("db1.internal", 22)
    );
    assert_eq!(
        parse(&["tp", "connect", "db1.internal", "22"])
            .unwrap()
            .command,
        connect("db1.internal", 22)
    );
    // ssh's %h gives IPv6 without brackets.
    assert_eq!(
        parse(&["tp", "::1", "22"]).unwrap().command,
        connect("::1", 22)
    );
    assert_eq!(
        parse(&["tp", "[::1]", "22"]).unwrap().command,
        connect("::1", 22)
    );
}

#[test]
fn up_and_the_multicall_name() {
    let expected = Command::Up {
        target: Target::parse("db1.internal:5432").unwrap(),
        local_port: 15432,
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        udp: false,
        udp_idle: Duration::from_secs(120),
    };
    assert_eq!(
        parse(&["tp", "up", "db1.internal:5432", "15432"])
            .unwrap()
            .command,
        expected
    );
    assert_eq!(
        parse(&["tp-up", "db1.internal:5432", "15432"])
            .unwrap()
            .command,
        expected
    );
    assert_eq!(
        parse(&["/usr/local/bin/tp-up", "db1.internal:5432", "15432"])
            .unwrap()
            .command,
        expected
    );
    let cli = parse(&["tp", "up", "--bind", "::", "[::1]:22", "0"]).unwrap();
    assert_eq!(
        cli.command,
        Command::Up {
            target: Target::parse("[::1]:22").unwrap(),
            local_port: 0,
            bind: "::".parse().unwrap(),
            udp: false,
            udp_idle: Duration::from_secs(120),
        }
    );
}

#[test]
fn up_udp_and_its_idle_timeout() {
    let udp = |idle: u64| Command::Up {
        target: Target::parse("dns1.internal:53").unwrap(),
        local_port: 5353,
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        udp: true,
        udp_idle: Duration::from_secs(idle),
    };
    let cmd = |args: &[&str]| parse(args).unwrap().command;
    assert_eq!(
        cmd(&["tp", "up", "--udp", "dns1.internal:53", "5353"]),
        udp(120)
    );
    assert_eq!(
        cmd(&["tp-up", "dns1.internal:53", "5353", "--udp"]),
        udp(120)
    );
    assert_eq!(
        cmd(&[
            "tp",
            "up",
            "--udp",
            "--udp-idle",
            "30s",
            "dns1.internal:53",
            "5353"
        ]),
        udp(30)
    );
    // --udp-idle means nothing without --udp; zero and bare numbers are refused.
    for args in [
        &["tp", "up", "--udp-idle", "30s", "dns1.internal:53", "5353"][..],
        &[
            "tp",
            "up",
            "--udp",
            "--udp-idle",
            "0s",
            "dns1.internal:53",
            "5353",
        ],
        &[
            "tp",
            "up",
            "--udp",
            "--udp-idle",
            "30",
            "dns1.internal:53",
            "5353",
        ],
    ] {
        let err = parse(args).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
    }
}

#[test]
fn global_options_go_before_or_after_the_command() {
    let cli = parse(&[
        "tp",
        "--server",
        "tp.example.org",
        "-vv",
        "db1.internal",
        "22",
        "--connect-timeout",
        "3s",
    ])
    .unwrap();
    assert_eq!(cli.global.verbose, 2);
    assert_eq!(
        cli.global.server,
        Some(ServerAddr::parse("tp.example.org:443").unwrap())
    );
    assert_eq!(cli.global.connect_timeout, Some(Duration::from_secs(3)));

    let cli = parse(&["tp-up", "db1:5432", "1", "--cert", "~/a.pem", "-v"]).unwrap();
    assert_eq!(cli.global.verbose, 1);
    let layer = cli.global.layer(Some(Path::new("/home/a")));
    assert_eq!(layer.cert, Some(PathBuf::from("/home/a/a.pem")));
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &["tp"][..],
        &["tp", "db1.internal"],
        &["tp", "bad host", "22"],
        &["tp", "db1.internal", "0"],
        &["tp", "db1.internal", "ssh"],
        &["tp", "db1.internal", "22", "extra"],
        &["tp", "up", "db1.internal", "15432"],
        &["tp", "up", "::1:22", "15432"],
        &["tp", "up", "db1:22", "70000"],
        &["tp-up", "db1:22"],
        &["tp", "--server", "a:0", "db1", "22"],
        &["tp", "--connect-timeout", "10", "db1", "22"],
        &["tp", "--transport", "udp", "db1", "22"],
        &["tp", "--transport", "", "db1", "22"],
    ] {
        let err = parse(args).expect_err(&args.join(" "));
        assert_eq!(err.exit_code(), i32::from(exit::USAGE), "{args:?}: {err}");
    }
}

#[test]
fn long_help_documents_config_env_and_exit_statuses() {
    let err = parse(&["tp", "--help"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
    let help = err.to_string();
    for needle in [
        "TP_SERVER",
        "TP_CA",
        "TP_TRANSPORT",
        "--transport",
        "transport = \"auto\"",
        "~/.cache/tp/transport",
        "TP_CONFIG",
        "TP_LOG",
        "config.toml",
        "ProxyCommand",
        "10  server answered denied",
        "19  server answered another error code",
        "connect",
        "up",
        "tp up --udp",
        "--udp-idle",
        "At most 512 flows",
        "TP_PEER_CA",
        "peer_ca",
        "tp expose 22 --name alice-laptop",
        "trailing dot (db1.)",
        "20  server answered conflict",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn up_help_documents_udp_flags() {
    let err = parse(&["tp", "up", "--help"]).unwrap_err();
    let help = err.to_string();
    for needle in [
        "--udp",
        "--udp-idle <DURATION>",
        "[default: 2m]",
        "--bind <ADDR>",
    ] {
        assert!(
            help.contains(needle),
            "tp up --help lacks {needle:?}:\n{help}"
        );
    }
}

#[test]
fn global_flags_go_before_or_after_the_subcommand() {
    for args in [
        &[
            "tp",
            "--server",
            "tp.example.org:443",
            "up",
            "db1:5432",
            "15432",
        ][..],
        &[
            "tp",
            "up",
            "db1:5432",
            "15432",
            "--server",
            "tp.example.org:443",
        ][..],
        &[
            "tp-up",
            "--server",
            "tp.example.org:443",
            "db1:5432",
            "15432",
        ][..],
    ] {
        let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(matches!(cli.command, Command::Up { .. }), "{args:?}");
        assert_eq!(
            cli.global.server.map(|s| s.to_string()).as_deref(),
            Some("tp.example.org:443"),
            "{args:?}"
        );
    }
    let cli = parse(&["tp", "--server", "tp.example.org:443", "db1.", "22"]).unwrap();
    assert_eq!(cli.command, connect("db1", 22));
}

#[test]
fn a_single_label_is_a_service() {
    let service = |name: &str, port: u16| Command::Connect {
        dest: Dest::Service(ServiceName::parse(name).unwrap()),
        port,
    };
    let cmd = |args: &[&str]| parse(args).unwrap().command;
    assert_eq!(
        cmd(&["tp", "alice-laptop", "22"]),
        service("alice-laptop", 22)
    );
    assert_eq!(cmd(&["tp", "connect", "db1", "22"]), service("db1", 22));
    assert_eq!(cmd(&["tp", "db1.", "22"]), connect("db1", 22));
    assert_eq!(cmd(&["tp", "localhost", "22"]), connect("localhost", 22));
    assert_eq!(cmd(&["tp", "127.1", "22"]), connect("127.0.0.1", 22));
    let Command::Up { target, .. } = cmd(&["tp", "up", "alice-laptop:22", "2222"]) else {
        panic!("not up");
    };
    assert_eq!(
        target.dest,
        Dest::Service(ServiceName::parse("alice-laptop").unwrap())
    );
    // Services carry TCP only.
    let err = parse(&["tp", "up", "--udp", "dns1:53", "5353"]).unwrap_err();
    assert_eq!(err.exit_code(), i32::from(exit::USAGE));
    assert!(err.to_string().contains("trailing dot (db1.)"), "{err}");
    assert!(parse(&["tp", "up", "--udp", "dns1.:53", "5353"]).is_ok());
}

#[test]
fn expose_takes_a_name_or_a_public_port() {
    let cmd = |args: &[&str]| parse(args).unwrap().command;
    assert_eq!(
        cmd(&[
            "tp",
            "expose",
            "22",
            "--name",
            "alice-laptop",
            "--allow",
            "bob@corp",
            "--allow",
            "group:ops",
        ]),
        Command::Expose {
            local_port: 22,
            name: Some(ServiceName::parse("alice-laptop").unwrap()),
            public: None,
            allow: vec![
                AllowPattern::Exact("bob@corp".into()),
                AllowPattern::Group("ops".into())
            ],
            proxy_protocol: false,
            local_host: Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        }
    );
    assert_eq!(
        cmd(&[
            "tp",
            "expose",
            "8080",
            "--public",
            "2222",
            "--proxy-protocol",
            "--local-host",
            "::1",
            "--transport",
            "tcp",
        ]),
        Command::Expose {
            local_port: 8080,
            name: None,
            public: Some(2222),
            allow: vec![],
            proxy_protocol: true,
            local_host: Host::Ip("::1".parse().unwrap()),
        }
    );
    for args in [
        &["tp", "expose", "22"][..],
        &["tp", "expose", "22", "--name", "a", "--public", "2222"],
        &["tp", "expose", "22", "--name", "Alice"],
        &["tp", "expose", "22", "--name", "a.b"],
        &["tp", "expose", "0", "--name", "a"],
        &["tp", "expose", "22", "--public", "0"],
        &[
            "tp", "expose", "22", "--public", "2222", "--allow", "bob@corp",
        ],
        &["tp", "expose", "22", "--name", "a", "--proxy-protocol"],
        &["tp", "expose", "22", "--name", "a", "--allow", "group:"],
    ] {
        let err = parse(args).expect_err(&args.join(" "));
        assert_eq!(err.exit_code(), i32::from(exit::USAGE), "{args:?}: {err}");
    }
}

#[test]
fn the_transport_flag() {
    let cli = parse(&["tp", "--transport", "quic", "db1", "22"]).unwrap();
    assert_eq!(cli.global.transport, Some(Transport::Quic));
    assert_eq!(cli.global.layer(None).transport, Some(Transport::Quic));
    let cli = parse(&["tp-up", "db1:5432", "1", "--transport", "tcp"]).unwrap();
    assert_eq!(cli.global.transport, Some(Transport::Tcp));
    let cli = parse(&["tp", "db1", "22"]).unwrap();
    assert_eq!(cli.global.transport, None, "the default comes from resolve");
    let err = parse(&["tp", "--transport", "udp", "db1", "22"]).unwrap_err();
    assert!(
        err.to_string().contains("expected auto, quic or tcp"),
        "{err}"
    );
}
