use super::*;

#[test]
fn loopback_image_keeps_the_low_octets() {
    assert_eq!(
        loopback_of("10.244.0.5".parse().unwrap()),
        Ipv4Addr::new(127, 244, 0, 5)
    );
    assert_eq!(
        loopback_of("192.168.7.9".parse().unwrap()),
        Ipv4Addr::new(127, 168, 7, 9)
    );
}

#[test]
fn only_privileged_ports_shift() {
    let s = PortShift {
        unprivileged_start: 1024,
        shift: PORT_SHIFT,
    };
    assert_eq!(s.port(80), 10_080);
    assert_eq!(s.port(1023), 11_023);
    assert_eq!(s.port(1024), 1024);
    assert_eq!(s.port(8080), 8080);
    // Port 0 means "any": never shifted.
    assert_eq!(s.port(0), 0);
    // A machine that lets everyone bind everything shifts nothing.
    let open = PortShift {
        unprivileged_start: 0,
        shift: PORT_SHIFT,
    };
    assert_eq!(open.port(80), 80);
    // Never wraps.
    let big = PortShift {
        unprivileged_start: 65_535,
        shift: 60_000,
    };
    assert_eq!(big.port(65_000), 65_535);
}

#[test]
fn shift_round_trips_through_the_environment() {
    let s = PortShift {
        unprivileged_start: 512,
        shift: 20_000,
    };
    assert_eq!(PortShift::from_env(&s.to_env()), Some(s));
    assert_eq!(PortShift::from_env("nonsense"), None);
    let env = pod_env("10.244.1.2".parse().unwrap(), s);
    assert_eq!(
        env,
        [
            (BIND_ENV.to_owned(), "127.244.1.2".to_owned()),
            (SHIFT_ENV.to_owned(), "512:20000".to_owned()),
        ]
    );
}
