//! TCP forwarding: accept, connect upstream with bounded retries, copy both ways with half-close.
//!
//! One task per listener, one task per client connection. Each direction copies through a buffer that
//! exists only while data is moving: it is allocated after the socket reports readable and kept only
//! while reads fill it (bulk transfer), so idle connections cost no buffer memory and 10k concurrent
//! connections stay within tens of megabytes.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use super::model::ProxyConfig;
use super::service::Service;

const BUF_SIZE: usize = 16 * 1024;

/// Accept until the task is aborted; each connection lives in its own task, so aborting the listener
/// (the service left the snapshot) lets established connections finish.
pub(crate) async fn serve(listener: TcpListener, svc: Arc<Service>, config: Arc<ProxyConfig>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(handle(stream, peer, svc.clone(), config.clone()));
            }
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning; the listener stays.
                tracing::warn!(service = %svc.listen, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(client: TcpStream, peer: SocketAddr, svc: Arc<Service>, config: Arc<ProxyConfig>) {
    let _ = client.set_nodelay(true);
    let mut tried = Vec::with_capacity(config.max_attempts);
    let mut upstream = None;
    while tried.len() < config.max_attempts {
        let Some((ep, traffic)) = svc.pick(peer, &tried, Instant::now()) else {
            break;
        };
        tried.push(ep);
        match tokio::time::timeout(config.connect_timeout, TcpStream::connect(ep)).await {
            Ok(Ok(server)) => {
                svc.connected(ep, &traffic);
                upstream = Some((ep, traffic, server));
                break;
            }
            Ok(Err(e)) => {
                tracing::debug!(service = %svc.listen, endpoint = %ep, error = %e, "connect failed");
                svc.connect_failed(ep, Instant::now());
            }
            Err(_) => {
                tracing::debug!(service = %svc.listen, endpoint = %ep, "connect timed out");
                svc.connect_failed(ep, Instant::now());
            }
        }
    }
    let Some((ep, traffic, server)) = upstream else {
        // No endpoint could be reached: closing the accepted socket is the client's "refused".
        return;
    };
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let half = AtomicBool::new(false);
    let on_eof = || {
        if !half.swap(true, Ordering::AcqRel) {
            svc.half_closed(ep);
        }
    };
    let up = copy_half(
        cr,
        sw,
        |n| {
            traffic.add_in(n);
            svc.totals.add_in(n);
        },
        &on_eof,
    );
    let down = copy_half(
        sr,
        cw,
        |n| {
            traffic.add_out(n);
            svc.totals.add_out(n);
        },
        &on_eof,
    );
    // try_join: an error (reset) in either direction ends both; a clean EOF waits for the other side.
    let result = tokio::try_join!(up, down);
    svc.closed(
        ep,
        half.load(Ordering::Acquire),
        result.is_ok(),
        Instant::now(),
    );
}

/// Copy one direction until EOF, then shut down the writing side (half-close) and return.
async fn copy_half(
    reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
    count: impl Fn(usize),
    on_eof: &impl Fn(),
) -> io::Result<()> {
    let mut kept: Option<Vec<u8>> = None;
    loop {
        reader.readable().await?;
        let mut buf = kept.take().unwrap_or_else(|| Vec::with_capacity(BUF_SIZE));
        buf.clear();
        match reader.try_read_buf(&mut buf) {
            Ok(0) => {
                on_eof();
                // The peer may already be gone entirely; a failed shutdown then changes nothing.
                let _ = writer.shutdown().await;
                return Ok(());
            }
            Ok(n) => {
                count(n);
                writer.write_all(&buf[..n]).await?;
                if n == buf.capacity() {
                    kept = Some(buf);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}
