//! A minimal HTTP client for the benchmark: one TCP (and TLS) connection per `Conn`, speaking either
//! HTTP/2 (one connection carries many concurrent requests as streams) or HTTP/1.1 (one request at a
//! time per connection). No pooling, retries or redirects: every request the benchmark counts is
//! exactly one request on the wire.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Which HTTP version a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    /// HTTP/2: one connection, requests multiplexed as streams.
    H2,
    /// HTTP/1.1: one request at a time per connection.
    H1,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::H2 => "h2",
            Proto::H1 => "http/1.1",
        })
    }
}

/// Where and how to reach a server: address, TLS trust and bearer token.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
    alpn_h1: Option<tokio_rustls::TlsConnector>,
    token: Option<String>,
}

impl Endpoint {
    /// A plain-HTTP endpoint without authentication (etcd's JSON gateway).
    pub(crate) fn plain(addr: SocketAddr) -> Self {
        Endpoint {
            addr,
            tls: None,
            alpn_h1: None,
            token: None,
        }
    }

    /// The server, CA and token of a kubeconfig written by `pontifex apiserver` (one cluster, one user
    /// with a token, the CA inline as `certificate-authority-data`).
    pub(crate) fn from_kubeconfig(text: &str) -> anyhow::Result<Self> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix(name)
                        .map(|v| v.trim().trim_matches('"').to_owned())
                })
                .with_context(|| format!("the kubeconfig has no {name}"))
        };
        let server = field("server:")?;
        let ca_pem = base64::engine::general_purpose::STANDARD
            .decode(field("certificate-authority-data:")?)
            .context("decoding certificate-authority-data")?;
        let token = field("token:")?;
        let hostport = server
            .strip_prefix("https://")
            .context("the kubeconfig's server is not https://")?;
        let addr: SocketAddr = hostport
            .trim_end_matches('/')
            .parse()
            .context("the server is not an ip:port")?;
        if !addr.ip().is_loopback() {
            // All benchmark traffic stays on this machine.
            bail!("refusing to benchmark {addr}: not a loopback address");
        }

        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca_pem) {
            roots.add(cert.context("parsing the CA certificate")?)?;
        }
        let make = |alpn: &[&[u8]]| -> anyhow::Result<tokio_rustls::TlsConnector> {
            let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
        };
        Ok(Endpoint {
            addr,
            tls: Some(make(&[b"h2"])?),
            alpn_h1: Some(make(&[b"http/1.1"])?),
            token: Some(token),
        })
    }

    /// Open one connection speaking `proto`.
    pub(crate) async fn connect(&self, proto: Proto) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let connector = match proto {
            Proto::H2 => self.tls.as_ref(),
            Proto::H1 => self.alpn_h1.as_ref(),
        };
        let sender = match connector {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
                let stream = tls.connect(name, tcp).await.context("TLS handshake")?;
                let negotiated = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                let want: &[u8] = if proto == Proto::H2 {
                    b"h2"
                } else {
                    b"http/1.1"
                };
                if negotiated.as_deref() != Some(want) {
                    bail!("the server did not agree to {proto} (ALPN {negotiated:?})");
                }
                handshake(stream, proto).await?
            }
            None => handshake(tcp, proto).await?,
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        Ok(Conn {
            sender,
            authority: self.addr.to_string(),
            scheme,
            token: self.token.clone(),
        })
    }
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

async fn handshake<S>(io: S, proto: Proto) -> anyhow::Result<Sender>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    Ok(match proto {
        Proto::H2 => {
            let (send, conn) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Sender::H2(send)
        }
        Proto::H1 => {
            let (send, conn) = http1::handshake(io).await?;
            tokio::spawn(conn);
            Sender::H1(send)
        }
    })
}

/// One connection. HTTP/2 connections are cheap to clone (the clones share the connection).
pub(crate) struct Conn {
    sender: Sender,
    authority: String,
    scheme: &'static str,
    token: Option<String>,
}

impl Clone for Conn {
    /// Only HTTP/2 connections can be shared; cloning an HTTP/1.1 one is a bug in the caller.
    fn clone(&self) -> Self {
        let sender = match &self.sender {
            Sender::H2(s) => Sender::H2(s.clone()),
            Sender::H1(_) => panic!("an HTTP/1.1 connection cannot be shared"),
        };
        Conn {
            sender,
            authority: self.authority.clone(),
            scheme: self.scheme,
            token: self.token.clone(),
        }
    }
}

impl Conn {
    /// Send one request and return the response head with its body still streaming.
    pub(crate) async fn send(
        &mut self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        body: Option<Bytes>,
    ) -> anyhow::Result<Response<Incoming>> {
        self.send_typed(method, path, accept, body, "application/json")
            .await
    }

    /// [`Conn::send`] with the body's content type (e.g. `application/merge-patch+json`).
    pub(crate) async fn send_typed(
        &mut self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        body: Option<Bytes>,
        content_type: &str,
    ) -> anyhow::Result<Response<Incoming>> {
        // HTTP/2 needs :scheme and :authority (an absolute URI); HTTP/1.1 gets origin-form plus Host.
        let uri = match self.sender {
            Sender::H2(_) => format!("{}://{}{path}", self.scheme, self.authority),
            Sender::H1(_) => path.to_owned(),
        };
        let mut req = Request::builder().method(method).uri(uri);
        if matches!(self.sender, Sender::H1(_)) {
            req = req.header(http::header::HOST, &self.authority);
        }
        if let Some(token) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        req = req.header(http::header::ACCEPT, accept.unwrap_or("application/json"));
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, content_type);
        }
        let req = req.body(Full::new(body.unwrap_or_default()))?;
        Ok(match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        })
    }

    /// Send one request and read the whole response: status and body.
    pub(crate) async fn call(
        &mut self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        body: Option<Bytes>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let resp = self.send(method, path, accept, body).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}
