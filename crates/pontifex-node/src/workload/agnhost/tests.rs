use std::net::SocketAddr;

use super::*;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn netexec_defaults_are_agnhosts() {
    assert_eq!(
        parse(&s(&["netexec"])).unwrap(),
        Mode::Netexec(NetexecOptions {
            http_ports: vec![8080],
            udp_ports: vec![8081],
            delay_shutdown_seconds: 0,
        })
    );
}

#[test]
fn netexec_delay_shutdown_takes_seconds() {
    for args in [
        &["netexec", "--delay-shutdown=100"][..],
        &["netexec", "--delay-shutdown", "100"],
    ] {
        let Mode::Netexec(o) = parse(&s(args)).unwrap() else {
            panic!("not netexec");
        };
        assert_eq!(o.delay_shutdown_seconds, 100);
    }
    assert!(matches!(
        parse(&s(&["netexec", "--delay-shutdown=soon"])),
        Err(AgnhostError::BadFlag { .. })
    ));
}

#[test]
fn netexec_ports_repeat_and_disable() {
    let m = parse(&s(&[
        "netexec",
        "--http-port=80",
        "--http-port",
        "81",
        "--udp-port=-1",
    ]))
    .unwrap();
    assert_eq!(
        m,
        Mode::Netexec(NetexecOptions {
            http_ports: vec![80, 81],
            udp_ports: vec![],
            delay_shutdown_seconds: 0,
        })
    );
    assert!(matches!(
        parse(&s(&["netexec", "--http-port=x"])),
        Err(AgnhostError::BadFlag { .. })
    ));
    assert!(matches!(
        parse(&s(&["netexec", "--udp-port=70000"])),
        Err(AgnhostError::BadFlag { .. })
    ));
}

#[test]
fn serve_hostname_and_pause_parse() {
    assert_eq!(
        parse(&s(&[
            "serve-hostname",
            "--udp",
            "--http=false",
            "--port=9000"
        ]))
        .unwrap(),
        Mode::ServeHostname(ServeHostnameOptions {
            port: 9000,
            http: false,
            udp: true,
            tcp: false,
            close: false
        })
    );
    assert_eq!(parse(&s(&["pause"])).unwrap(), Mode::Pause);
    assert_eq!(parse(&[]).unwrap(), Mode::Pause);
    assert!(matches!(
        parse(&s(&["liveness"])),
        Err(AgnhostError::UnknownSubcommand(_))
    ));
}

#[test]
fn udp_commands_match_agnhost() {
    let peer: SocketAddr = "[::ffff:10.0.0.7]:4000".parse().unwrap();
    assert_eq!(udp_answer(b"echo Hello\n", peer).as_deref(), Some("hello"));
    assert_eq!(
        udp_answer(b"clientip", peer).as_deref(),
        Some("10.0.0.7:4000")
    );
    assert_eq!(udp_answer(b" HOSTNAME ", peer), Some(hostname()));
    assert_eq!(udp_answer(b"what", peer), None);
    assert_eq!(udp_answer(b"echo", peer), None);
}
