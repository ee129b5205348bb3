use super::*;

#[test]
fn entries_use_go_rfc3339nano() {
    let t: jiff::Timestamp = "2024-05-01T10:00:00.123400Z".parse().unwrap();
    let e = format_entry(t, Stream::Stdout, false, b"hello world");
    assert_eq!(
        String::from_utf8(e).unwrap(),
        "2024-05-01T10:00:00.1234Z stdout F hello world\n"
    );
    let t: jiff::Timestamp = "2024-05-01T10:00:00Z".parse().unwrap();
    let e = format_entry(t, Stream::Stderr, true, b"x");
    assert_eq!(
        String::from_utf8(e).unwrap(),
        "2024-05-01T10:00:00Z stderr P x\n"
    );
}

#[test]
fn entries_round_trip() {
    let t: jiff::Timestamp = "2024-05-01T10:00:00.000000001Z".parse().unwrap();
    let e = String::from_utf8(format_entry(t, Stream::Stderr, false, b"a b  c")).unwrap();
    let parsed = parse_entry(e.trim_end()).unwrap();
    assert_eq!(
        parsed,
        LogLine {
            time: t,
            stream: Stream::Stderr,
            partial: false,
            content: "a b  c".into()
        }
    );
    assert_eq!(parse_entry("garbage"), None);
    assert_eq!(parse_entry("2024-05-01T10:00:00Z stdin F x"), None);
}

#[tokio::test]
async fn copy_splits_long_lines_and_read_joins_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(dir.path(), 0);
    let long = "y".repeat(MAX_ENTRY + 10);
    let input = format!("first\n\n{long}\nlast-without-newline");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    copy_stream(input.as_bytes(), file, Stream::Stdout).await;
    let raw = std::fs::read_to_string(&path).unwrap();
    let tags: Vec<&str> = raw.lines().map(|l| l.split(' ').nth(2).unwrap()).collect();
    assert_eq!(tags, ["F", "F", "P", "F", "F"]);
    let mut out = Vec::new();
    read_logs(&path, false, &mut out, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("first\n\n{long}\nlast-without-newline\n")
    );
}

#[test]
fn the_shims_blocking_copy_writes_the_same_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(dir.path(), 3);
    let long = "z".repeat(2 * MAX_ENTRY + 1);
    let input = format!("one\n{long}\n\ntail");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    copy_stream_blocking(input.as_bytes(), file, Stream::Stderr);
    let raw = std::fs::read_to_string(&path).unwrap();
    let parsed: Vec<LogLine> = raw.lines().map(|l| parse_entry(l).unwrap()).collect();
    let tags: Vec<bool> = parsed.iter().map(|l| l.partial).collect();
    // "one", the long line in three pieces (two partial), the empty line, the unterminated tail.
    assert_eq!(tags, [false, true, true, false, false, false]);
    assert!(parsed.iter().all(|l| l.stream == Stream::Stderr));
    assert_eq!(parsed[1].content.len(), MAX_ENTRY);
    assert_eq!(parsed[3].content.len(), 1);
    assert_eq!(parsed[4].content, "");
    assert_eq!(parsed[5].content, "tail");
}
