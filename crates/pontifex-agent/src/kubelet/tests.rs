use pontifex_node::workload::logs::{LogLine, Stream};
use pontifex_node::workload::state::{ContainerRecord, Ended, Instance, ProcessId};

use super::*;

#[test]
fn parses_the_kubelet_path_and_query() {
    let r = LogRequest::parse(
        "/containerLogs/default/web-1/nginx",
        Some("follow=true&previous=1&tailLines=10&timestamps=true&limitBytes=100&container=x"),
    )
    .unwrap();
    assert_eq!(
        r,
        LogRequest {
            namespace: "default".into(),
            pod: "web-1".into(),
            container: "nginx".into(),
            follow: true,
            previous: true,
            tail_lines: Some(10),
            timestamps: true,
            limit_bytes: Some(100),
        }
    );
    let r = LogRequest::parse("/containerLogs/a/b/c", None).unwrap();
    assert!(!r.follow && !r.previous && !r.timestamps);
    assert_eq!((r.tail_lines, r.limit_bytes), (None, None));
    // Negative tailLines: everything.
    let r = LogRequest::parse("/containerLogs/a/b/c", Some("tailLines=-1")).unwrap();
    assert_eq!(r.tail_lines, None);
}

#[test]
fn refuses_names_that_could_leave_the_pod_directory() {
    for path in [
        "/containerLogs/../b/c",
        "/containerLogs/a/../c",
        "/containerLogs/a/b/..",
        "/containerLogs/a/b/.hidden",
        "/containerLogs/a/b_x/c",
        "/containerLogs/a/b/c/d",
        "/containerLogs/a/b",
        "/containerLogs/A/b/c",
        "/containerLogs/a//c",
    ] {
        let e = LogRequest::parse(path, None).unwrap_err();
        assert_eq!(e.status, 400, "{path}");
    }
    assert_eq!(LogRequest::parse("/pods", None).unwrap_err().status, 404);
    for q in [
        "follow=yes",
        "tailLines=x",
        "limitBytes=0",
        "sinceSeconds=10",
    ] {
        assert_eq!(
            LogRequest::parse("/containerLogs/a/b/c", Some(q))
                .unwrap_err()
                .status,
            400,
            "{q}"
        );
    }
}

fn line(content: &str, partial: bool) -> LogLine {
    LogLine {
        time: "2025-01-02T03:04:05.5Z".parse().unwrap(),
        stream: Stream::Stdout,
        partial,
        content: content.into(),
    }
}

#[test]
fn entries_render_with_and_without_timestamps() {
    assert_eq!(render_entry(&line("hello", false), false), "hello\n");
    assert_eq!(render_entry(&line("hel", true), false), "hel");
    assert_eq!(
        render_entry(&line("hello", false), true),
        "2025-01-02T03:04:05.500000000Z hello\n"
    );
}

#[test]
fn tail_counts_whole_lines() {
    let e = vec![
        line("a", false),
        line("b1", true),
        line("b2", false),
        line("c", false),
    ];
    let text = |s: &[LogLine]| s.iter().map(|l| render_entry(l, false)).collect::<String>();
    assert_eq!(text(tail(&e, 0)), "");
    assert_eq!(text(tail(&e, 1)), "c\n");
    assert_eq!(text(tail(&e, 2)), "b1b2\nc\n");
    assert_eq!(text(tail(&e, 3)), "a\nb1b2\nc\n");
    assert_eq!(text(tail(&e, 10)), "a\nb1b2\nc\n");
    assert!(tail(&[], 3).is_empty());
}

#[test]
fn limit_bytes_cuts_the_stream() {
    let mut left = Some(7);
    assert_eq!(limited("hello\n".into(), &mut left).unwrap(), "hello\n");
    assert_eq!(limited("world\n".into(), &mut left).unwrap(), "w");
    assert!(limited("more\n".into(), &mut left).is_none());
    let mut none = None;
    assert_eq!(limited("all\n".into(), &mut none).unwrap(), "all\n");
}

fn record(restarts: i32, running: bool, ended: bool) -> ContainerRecord {
    let t: jiff::Timestamp = "2025-01-02T03:04:05Z".parse().unwrap();
    let pid = ProcessId {
        pid: 1,
        start_ticks: 1,
    };
    ContainerRecord {
        restart_count: restarts,
        running: running.then(|| Instance {
            id: "x".into(),
            shim: pid,
            process: pid,
            started_at: t,
        }),
        last_termination: ended.then(|| Ended {
            id: "x".into(),
            exit_code: 1,
            signal: None,
            reason: "Error".into(),
            message: None,
            started_at: t,
            finished_at: t,
        }),
        finished: false,
    }
}

#[test]
fn previous_picks_the_last_instance_that_ended() {
    let req = |previous| LogRequest {
        previous,
        ..LogRequest::parse("/containerLogs/a/b/c", None).unwrap()
    };
    assert_eq!(instance(&req(false), &record(2, true, true)), Ok(2));
    // Running again after two restarts: the previous is instance 1.
    assert_eq!(instance(&req(true), &record(2, true, true)), Ok(1));
    // Ended and not (yet) restarted: the previous is the one that ended.
    assert_eq!(instance(&req(true), &record(2, false, true)), Ok(2));
    let e = instance(&req(true), &record(0, true, false)).unwrap_err();
    assert_eq!(e.status, 400);
    assert!(e.message.contains("previous terminated container"), "{e:?}");
}

#[tokio::test]
async fn serves_a_log_file_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let cdir = dir.path().join("pods/default_web_uid-1/nginx");
    std::fs::create_dir_all(&cdir).unwrap();
    std::fs::write(
        pontifex_node::workload::state::state_path(&cdir),
        serde_json::to_vec(&record(0, true, false)).unwrap(),
    )
    .unwrap();
    let t: jiff::Timestamp = "2025-01-02T03:04:05Z".parse().unwrap();
    let mut log = Vec::new();
    for l in ["one", "two", "three"] {
        log.extend(logs::format_entry(t, Stream::Stdout, false, l.as_bytes()));
    }
    std::fs::write(logs::log_path(&cdir, 0), log).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, dir.path().to_owned(), stop.clone()));
    let get = |path: &'static str| async move {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(
            hyper_util::rt::TokioIo::new(s),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let r = send
            .send_request(Request::get(path).body(Full::default()).unwrap())
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    assert_eq!(
        get("/containerLogs/default/web/nginx").await,
        (200, "one\ntwo\nthree\n".into())
    );
    assert_eq!(
        get("/containerLogs/default/web/nginx?tailLines=1").await,
        (200, "three\n".into())
    );
    let (status, body) = get("/containerLogs/default/web/other").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("waiting to start"), "{body}");
    assert_eq!(get("/containerLogs/default/nope/nginx").await.0, 404);
    assert_eq!(
        get("/containerLogs/default/web/nginx?previous=true")
            .await
            .0,
        400
    );
    stop.cancel();
}
