use std::net::SocketAddr;
use std::time::Duration;

use pontifex_node::workload::agnhost;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// A port below the ephemeral range (so no client connection of a parallel test takes it between this
/// check and the server's bind), free for TCP and UDP on every address.
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20000
            + ((std::process::id() as u16)
                .wrapping_mul(7)
                .wrapping_add(n.wrapping_mul(13))
                % 12000);
        let tcp = std::net::TcpListener::bind(("::", port)).is_ok();
        let udp = std::net::UdpSocket::bind(("::", port)).is_ok();
        if tcp && udp {
            return port;
        }
    }
}

fn free_udp_port() -> u16 {
    free_port()
}

/// A raw HTTP/1.0 GET: returns the status code and the body.
pub(crate) async fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\nX-Probe: yes\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

async fn wait_listening(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing listens on {port}");
}

async fn udp(port: u16, msg: &str) -> (String, SocketAddr) {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = s.local_addr().unwrap();
    s.send_to(msg.as_bytes(), ("127.0.0.1", port))
        .await
        .unwrap();
    let mut buf = [0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(2), s.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    (String::from_utf8_lossy(&buf[..n]).into_owned(), me)
}

#[tokio::test]
async fn netexec_answers_every_endpoint() {
    let (h1, h2, u1) = (free_port(), free_port(), free_udp_port());
    let stop = CancellationToken::new();
    let args: Vec<String> = [
        "netexec".into(),
        format!("--http-port={h1}"),
        format!("--http-port={h2}"),
        format!("--udp-port={u1}"),
    ]
    .into();
    let server = tokio::spawn(agnhost::run(args, stop.clone()));
    wait_listening(h1).await;
    wait_listening(h2).await;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();

    for port in [h1, h2] {
        assert_eq!(get(port, "/hostname").await, (200, host.clone()));
    }
    assert_eq!(get(h1, "/hostName").await.1, host);
    let (code, body) = get(h1, "/").await;
    assert!(code == 200 && body.starts_with("NOW: "), "{body}");
    let (_, ip) = get(h1, "/clientip").await;
    assert!(
        ip.starts_with("127.0.0.1:") && ip.rsplit(':').next().unwrap().parse::<u16>().is_ok(),
        "{ip}"
    );
    assert_eq!(
        get(h1, "/echo?msg=hello%20world").await,
        (200, "hello world".into())
    );
    assert_eq!(
        get(h1, "/echo?msg=teapot&code=418").await,
        (418, "teapot".into())
    );
    assert_eq!(get(h1, "/healthz").await.0, 200);
    assert_eq!(get(h1, "/header?key=X-Probe").await.1, "yes");
    assert_eq!(
        get(h1, "/shell?cmd=echo%20hi").await.1,
        r#"{"output":"hi\n"}"#
    );

    // /dial over HTTP to the other port, and over UDP.
    let (code, body) = get(
        h1,
        &format!("/dial?request=hostname&protocol=http&host=127.0.0.1&port={h2}&tries=2"),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"responses": [host, host]})
    );
    let (_, body) = get(
        h1,
        &format!("/dial?request=echo%20hi&protocol=udp&host=127.0.0.1&port={u1}"),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"responses": ["hi"]})
    );
    let dead = free_port();
    let (code, body) = get(
        h1,
        &format!("/dial?request=hostname&host=127.0.0.1&port={dead}"),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code, 200);
    assert!(
        v.get("responses").is_none() && v["errors"].as_array().unwrap().len() == 1,
        "{body}"
    );
    assert_eq!(get(h1, "/dial?host=127.0.0.1&port=1").await.0, 400);
    assert_eq!(
        get(h1, "/dial?request=x&host=127.0.0.1&port=1&protocol=sctpx")
            .await
            .0,
        400
    );

    // UDP commands.
    assert_eq!(udp(u1, "hostname").await.0, host);
    assert_eq!(udp(u1, "echo Hello\n").await.0, "hello");
    let (ip, me) = udp(u1, "clientip").await;
    assert_eq!(ip, me.to_string());

    // /exit ends the server with the code.
    assert_eq!(get(h1, "/exit?code=7").await.0, 200);
    let code = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(code, 7);
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", h1))
            .await
            .is_err(),
        "still listening after /exit"
    );
}

#[tokio::test]
async fn serve_hostname_and_pause_stop_on_shutdown() {
    let port = free_port();
    let stop = CancellationToken::new();
    let server = tokio::spawn(agnhost::run(
        vec!["serve-hostname".into(), format!("--port={port}")],
        stop.clone(),
    ));
    wait_listening(port).await;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(get(port, "/anything").await, (200, host));
    stop.cancel();
    assert_eq!(server.await.unwrap().unwrap(), 0);

    let stop = CancellationToken::new();
    let pause = tokio::spawn(agnhost::run(vec!["pause".into()], stop.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!pause.is_finished());
    stop.cancel();
    assert_eq!(pause.await.unwrap().unwrap(), 0);
}

#[tokio::test]
async fn a_port_in_use_is_a_bind_error() {
    let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let r = agnhost::run(
        vec![
            "netexec".into(),
            format!("--http-port={port}"),
            "--udp-port=-1".into(),
        ],
        CancellationToken::new(),
    )
    .await;
    assert!(
        matches!(r, Err(agnhost::AgnhostError::Bind { .. })),
        "{r:?}"
    );
}
