//! TCP forwarding: accept, connect upstream with bounded retries, copy both ways with half-close.
//!
//! One task per listener, one task per client connection. Each direction copies through a per-thread
//! scratch buffer and writes on at once; only bytes the other side cannot take yet get a buffer of
//! their own, so idle connections cost no buffer memory and 10k concurrent connections stay within
//! tens of megabytes. A read that fills the buffer marks bulk transfer: on Linux that direction
//! then moves its data with splice(2) (zero-copy) through pipes borrowed from a small per-thread
//! pool only while bytes sit in them, so a connection costs its two sockets and no more descriptors;
//! when no pipe can be had, that round copies.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
    if !svc.admits(peer.ip()) {
        // Outside loadBalancerSourceRanges. kube-proxy drops the SYN; a userspace proxy only sees
        // the connection once the kernel accepted it, so the nearest is a reset (linger 0): the
        // client gets neither a byte nor a clean EOF.
        let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
        return;
    }
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
    let half = AtomicBool::new(false);
    let on_eof = || {
        if !half.swap(true, Ordering::AcqRel) {
            svc.half_closed(ep);
        }
    };
    // Both directions borrow both sockets: tokio's readiness API takes `&self`, so no split is needed,
    // and splice(2) needs the descriptors themselves.
    let up = pump(
        &client,
        &server,
        config.splice,
        |n| {
            traffic.add_in(n);
            svc.totals.add_in(n);
        },
        &on_eof,
    );
    let down = pump(
        &server,
        &client,
        config.splice,
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
///
/// Reads go to a per-thread scratch buffer and are written on at once, without waiting (the other
/// socket is nearly always writable): a request/response exchange then costs two syscalls and no
/// allocation, and an idle connection holds no buffer at all. Only bytes the other side cannot take
/// yet are copied into a buffer of their own while the direction waits. A read that fills the
/// scratch buffer means bulk data: when `splice` allows it, the direction then moves its data with
/// splice(2) for the rest of the connection, each round through a pipe borrowed from the thread's
/// pool (see `zero_copy`), or by copying when no pipe can be had.
async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    splice: bool,
    count: impl Fn(usize),
    on_eof: &impl Fn(),
) -> io::Result<()> {
    let mut bulk = false;
    loop {
        from.readable().await?;
        #[cfg(target_os = "linux")]
        if bulk && let Some(pipe) = zero_copy::take() {
            if zero_copy::round(from, to, pipe, &count).await? {
                on_eof();
                shutdown_write(to);
                return Ok(());
            }
            continue;
        }
        let full = match copy_round(from, to, &count)? {
            Step::Eof => {
                on_eof();
                shutdown_write(to);
                return Ok(());
            }
            Step::Again => continue,
            Step::Done(full) => full,
            Step::Pending(rest, full) => {
                write_all(to, &rest).await?;
                full
            }
        };
        bulk |= full && splice;
    }
}

/// One read into the thread's scratch buffer, written on at once as far as `to` takes it.
fn copy_round(from: &TcpStream, to: &TcpStream, count: &impl Fn(usize)) -> io::Result<Step> {
    SCRATCH.with_borrow_mut(|buf| {
        let n = match from.try_read(buf) {
            Ok(0) => return Ok(Step::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Again),
            Err(e) => return Err(e),
        };
        count(n);
        let mut off = 0;
        while off < n {
            match to.try_write(&buf[off..n]) {
                Ok(m) => off += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Step::Pending(buf[off..n].to_vec(), n == buf.len()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Step::Done(n == buf.len()))
    })
}

/// What one read-and-forward attempt did.
enum Step {
    /// The peer sent FIN.
    Eof,
    /// Spurious readiness: nothing to read.
    Again,
    /// Everything read was written on; `true` if the read filled the buffer.
    Done(bool),
    /// These bytes still wait for the other socket; `true` if the read filled the buffer.
    Pending(Vec<u8>, bool),
}

thread_local! {
    /// One copy buffer per runtime thread, shared by every connection it serves: a read is written
    /// on before the thread moves to another task, so nothing is left in it across an await.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; BUF_SIZE].into_boxed_slice());
}

/// Write all of `data`, trying first (the socket is usually writable) and waiting only when full.
async fn write_all(to: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match to.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Send our FIN. The peer may already be gone entirely; a failed shutdown then changes nothing.
fn shutdown_write(to: &TcpStream) {
    let _ = socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
}

/// splice(2) through a pipe: socket → pipe → socket, the bytes never entering userspace.
///
/// Pipes are borrowed per round, not owned per connection: a direction takes one when its socket
/// has data, fills it, drains it into the other socket (waiting for that socket if it must, the
/// only time a pipe is held across an await) and gives it back empty. So a proxied connection costs
/// its two sockets and nothing else while idle, whatever it carried before, and the process holds
/// at most `POOL_MAX` idle pipes per runtime thread plus one per direction that is mid-transfer.
#[cfg(target_os = "linux")]
mod zero_copy {
    use std::cell::RefCell;
    use std::io;
    use std::os::fd::OwnedFd;

    use nix::fcntl::{OFlag, SpliceFFlags, splice};
    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// Ask for this much per splice; the pipe's capacity (64 KiB by default) is the real bound.
    const CHUNK: usize = 1 << 20;

    /// Idle pipes kept per runtime thread. A handful covers the directions one thread moves at
    /// once; more would only hold descriptors that the connection budget wants.
    pub(super) const POOL_MAX: usize = 4;

    /// A non-blocking pipe; empty whenever it is in the pool.
    pub(super) struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
    }

    thread_local! {
        /// Idle, empty pipes of this thread. A pipe taken on one thread may come back on another
        /// (tasks move between runtime threads); each pool only caches, so that does not matter.
        static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty pipe from the pool, or a new one; `None` when none can be made (descriptor limit
    /// reached): the caller copies this round instead.
    pub(super) fn take() -> Option<Pipe> {
        if let Some(p) = POOL.with_borrow_mut(Vec::pop) {
            return Some(p);
        }
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).ok()?;
        Some(Pipe { read, write })
    }

    /// Return an empty pipe; beyond `POOL_MAX` it is closed.
    fn give(pipe: Pipe) {
        POOL.with_borrow_mut(|pool| {
            if pool.len() < POOL_MAX {
                pool.push(pipe);
            }
        });
    }

    const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_NONBLOCK.union(SpliceFFlags::SPLICE_F_MOVE);

    /// One round: fill `pipe` from `from` and drain it into `to` completely, then give it back.
    /// Returns `true` at EOF. A pipe that may still hold bytes (an error mid-drain) is closed, never
    /// pooled, so a pooled pipe is always empty.
    pub(super) async fn round(
        from: &TcpStream,
        to: &TcpStream,
        pipe: Pipe,
        count: &impl Fn(usize),
    ) -> io::Result<bool> {
        let filled = from.try_io(Interest::READABLE, || {
            splice(from, None, &pipe.write, None, CHUNK, FLAGS).map_err(io::Error::from)
        });
        let mut left = match filled {
            Ok(0) => {
                give(pipe);
                return Ok(true);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                give(pipe);
                return Ok(false);
            }
            Err(e) => {
                give(pipe);
                return Err(e);
            }
        };
        count(left);
        while left > 0 {
            let drained = to.try_io(Interest::WRITABLE, || {
                splice(&pipe.read, None, to, None, left, FLAGS).map_err(io::Error::from)
            });
            match drained {
                Ok(n) => left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
                Err(e) => return Err(e),
            }
        }
        give(pipe);
        Ok(false)
    }
}
