//! A minimal HTTP/1.1 GET client over one TCP connection, shared by netexec's `/dial` and the httpGet
//! probe. No TLS, no redirects, no connection reuse: both callers make one request per connection.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum GetError {
    /// The TCP connection could not be made.
    #[error("dial tcp {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The HTTP exchange failed (bad response, reset connection).
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (a header name or value, the path).
    #[error("invalid request: {0}")]
    Request(#[from] hyper::http::Error),
    /// Nothing complete arrived within the timeout.
    #[error("timeout after {0:?}")]
    Timeout(Duration),
}

/// The status code and body of `GET path` sent to `addr` with `Host: host`.
pub(crate) async fn get(
    addr: SocketAddr,
    host: &str,
    path_and_query: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(u16, Bytes), GetError> {
    tokio::time::timeout(timeout, get_inner(addr, host, path_and_query, headers))
        .await
        .map_err(|_| GetError::Timeout(timeout))?
}

async fn get_inner(
    addr: SocketAddr,
    host: &str,
    path_and_query: &str,
    headers: &[(String, String)],
) -> Result<(u16, Bytes), GetError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| GetError::Connect { addr, source })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let mut req = hyper::Request::get(path_and_query).header(hyper::header::HOST, host);
    let mut has_agent = false;
    for (k, v) in headers {
        has_agent |= k.eq_ignore_ascii_case("user-agent");
        req = req.header(k.as_str(), v.as_str());
    }
    if !has_agent {
        req = req.header(hyper::header::USER_AGENT, "pontifex");
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new())?)
        .await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    driver.abort();
    Ok((status, body))
}
