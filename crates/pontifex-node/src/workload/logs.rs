//! Container log files in the kubelet's (CRI) format: one line per output line,
//! `<RFC 3339 timestamp with nanoseconds> <stdout|stderr> <F|P> <content>`, `P` marking a piece of a
//! line longer than 16 KiB that continues on the next entry. Writing (from a process's pipes) and reading
//! back (for `pontifex logs`, optionally following) live here; where the files are is the caller's choice.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

/// Longest content of one entry, as in the kubelet's CRI logger.
const MAX_ENTRY: usize = 16 * 1024;

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One parsed log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the line was read from the process.
    pub time: jiff::Timestamp,
    /// Which output it came from.
    pub stream: Stream,
    /// `true` for a `P` entry: the line continues in the next entry.
    pub partial: bool,
    /// The content, without the newline.
    pub content: String,
}

/// The path of a container instance's log: `<dir>/<restart count>.log`, like the kubelet's
/// `/var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log`.
pub fn log_path(container_dir: &Path, restart_count: i32) -> PathBuf {
    container_dir.join(format!("{restart_count}.log"))
}

/// Formats one entry, newline included.
pub fn format_entry(
    time: jiff::Timestamp,
    stream: Stream,
    partial: bool,
    content: &[u8],
) -> Vec<u8> {
    // RFC3339Nano as Go prints it: nanoseconds with trailing zeros trimmed, `Z` for UTC.
    let mut out = format!(
        "{time:.0} {} {} ",
        stream.as_str(),
        if partial { "P" } else { "F" }
    )
    .into_bytes();
    // jiff's `{:.0}` gives no fraction; add Go's trimmed nanoseconds before the Z.
    let nanos = time.subsec_nanosecond();
    if nanos != 0 {
        let frac = format!(".{nanos:09}");
        let frac = frac.trim_end_matches('0');
        let z = out.iter().position(|&b| b == b'Z').unwrap_or(0);
        out.splice(z..z, frac.bytes());
    }
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// Parses one entry (without its newline); `None` for a malformed one.
pub fn parse_entry(line: &str) -> Option<LogLine> {
    let mut parts = line.splitn(4, ' ');
    let time: jiff::Timestamp = parts.next()?.parse().ok()?;
    let stream = match parts.next()? {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        "P" => true,
        "F" => false,
        _ => return None,
    };
    Some(LogLine {
        time,
        stream,
        partial,
        content: parts.next().unwrap_or("").to_string(),
    })
}

/// Copies a process's output into `file` as log entries until the pipe closes.
pub(crate) async fn copy_stream(pipe: impl AsyncRead + Unpin, file: std::fs::File, stream: Stream) {
    let mut file = tokio::fs::File::from_std(file);
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let now = jiff::Timestamp::now();
        let mut chunks = line.chunks(MAX_ENTRY).peekable();
        if line.is_empty() {
            let _ = file.write_all(&format_entry(now, stream, false, b"")).await;
            let _ = file.flush().await;
        }
        while let Some(chunk) = chunks.next() {
            // One write per entry: the file is opened O_APPEND, so stdout's and stderr's entries never
            // interleave inside a line.
            let entry = format_entry(now, stream, chunks.peek().is_some(), chunk);
            // tokio's File completes writes in the background; flush so readers (and `logs -f`) see
            // every entry once the copy returns.
            if file.write_all(&entry).await.is_err() || file.flush().await.is_err() {
                return;
            }
        }
    }
}

/// [`copy_stream`] for a thread of its own (the container shim has no runtime): copies `pipe` into
/// `file` as log entries until the pipe closes.
pub(crate) fn copy_stream_blocking(
    pipe: impl std::io::Read,
    mut file: std::fs::File,
    stream: Stream,
) {
    use std::io::{BufRead as _, Write as _};
    let mut reader = std::io::BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        // One write per entry on an O_APPEND file: stdout's and stderr's entries never interleave
        // inside a line, and a reader sees whole entries only.
        for entry in entries(jiff::Timestamp::now(), stream, &line) {
            if file.write_all(&entry).is_err() {
                return;
            }
        }
    }
}

/// The entries of one output line: several (all but the last partial) when it is longer than
/// [`MAX_ENTRY`], one empty entry for an empty line.
pub fn entries(time: jiff::Timestamp, stream: Stream, line: &[u8]) -> Vec<Vec<u8>> {
    if line.is_empty() {
        return vec![format_entry(time, stream, false, b"")];
    }
    let n = line.len().div_ceil(MAX_ENTRY);
    line.chunks(MAX_ENTRY)
        .enumerate()
        .map(|(i, chunk)| format_entry(time, stream, i + 1 < n, chunk))
        .collect()
}

/// Writes the content of the log at `path` to `out` (partial entries joined, one line per full entry).
/// With `follow`, keeps waiting for new entries until `stop` is cancelled; without, returns at the end.
pub async fn read_logs(
    path: &Path,
    follow: bool,
    out: &mut (impl AsyncWrite + Unpin),
    stop: &CancellationToken,
) -> std::io::Result<()> {
    let file = tokio::fs::File::open(path).await?;
    let mut reader = BufReader::new(file);
    let mut buf = String::new();
    loop {
        let n = reader.read_line(&mut buf).await?;
        if n == 0 || !buf.ends_with('\n') {
            // At the end (or in the middle of an entry being written): stop, or wait for more.
            if !follow {
                break;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
            }
        }
        if let Some(entry) = parse_entry(buf.trim_end_matches('\n')) {
            out.write_all(entry.content.as_bytes()).await?;
            if !entry.partial {
                out.write_all(b"\n").await?;
            }
        }
        buf.clear();
    }
    out.flush().await
}

#[cfg(test)]
mod tests;
