//! The HTTPS server: TLS (h2 and HTTP/1.1), bearer-token authentication, body limits, routing to
//! discovery, OpenAPI and the generic handler, and graceful shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pontifex_api::status::ApiError;
use pontifex_store::Store;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admission::Allocator;
use crate::request::{self, Query, Target};
use crate::{Reply, ReplyBody, discovery, handler};

pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What every request handler shares.
pub(crate) struct State {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) allocator: Allocator,
    pub(crate) token: String,
    pub(crate) shutdown: CancellationToken,
    pub(crate) bookmark_interval: Duration,
    /// `host:port` clients reach us at, for legacy discovery.
    pub(crate) server_address: String,
}

/// The answer to `/version`. The minor version also decides which kubectl the gcloud dispatcher runs.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0",
        "gitCommit": "pontifex",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

pub(crate) async fn serve(
    state: Arc<State>,
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let shutdown = state.shutdown.clone();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let state = state.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(state, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("API server stopped accepting; finishing in-flight requests");
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within 5s");
    }
    tracing::info!("API server stopped");
    Ok(())
}

fn authorized(state: &State, req: &Request<Incoming>) -> bool {
    let Some(value) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(token) = value.strip_prefix("Bearer ") else {
        return false;
    };
    // Constant-time comparison: the token is the only secret.
    let (a, b) = (token.trim().as_bytes(), state.token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn route(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let reply = match dispatch(&state, req).await {
        Ok(r) => r,
        Err(e) => Reply::json(e.code(), &e.to_status()),
    };
    tracing::debug!(%method, %path, status = reply.status, elapsed_ms = started.elapsed().as_millis() as u64, "request");
    into_response(reply)
}

async fn dispatch(state: &Arc<State>, req: Request<Incoming>) -> Result<Reply, ApiError> {
    let target = request::parse_path(req.uri().path());
    let public = matches!(target, Ok(Target::Version | Target::Health));
    if !public && !authorized(state, &req) {
        return Err(ApiError::Unauthorized);
    }
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    match target? {
        Target::Version => Ok(Reply::json(200, &version())),
        Target::Health => Ok(Reply::text(200, "ok")),
        Target::CoreGroup => Ok(match discovery::aggregated_version(&accept) {
            Some(v) => Reply::json(200, &discovery::aggregated(true, v))
                .content_type(discovery::aggregated_content_type(v)),
            None => Reply::json(200, &discovery::api_versions(&state.server_address)),
        }),
        Target::Groups => Ok(match discovery::aggregated_version(&accept) {
            Some(v) => Reply::json(200, &discovery::aggregated(false, v))
                .content_type(discovery::aggregated_content_type(v)),
            None => Reply::json(200, &discovery::group_list()),
        }),
        Target::Group(g) => discovery::group(&g)
            .map(|d| Reply::json(200, &d))
            .ok_or(ApiError::NoSuchResource),
        Target::GroupVersion { group, version } => Ok(Reply::json(
            200,
            &discovery::resource_list(&group, &version),
        )),
        Target::OpenApiV3(None) => Ok(Reply::json(200, &pontifex_api::openapi::index())),
        Target::OpenApiV3(Some(gv)) => {
            let doc = pontifex_api::openapi::group_version_document(&gv)
                .ok_or(ApiError::NoSuchResource)?;
            let reply = Reply::bytes(200, "application/json", Bytes::from_static(doc.json()));
            // The index links each document by its content hash, so a request naming the current hash
            // may be cached forever, as kube-apiserver allows (kubectl then skips the download).
            let query = Query::parse(req.uri().query());
            Ok(if query.get("hash") == Some(doc.hash()) {
                reply.cache_immutable()
            } else {
                reply
            })
        }
        // kubectl asks v2 for protobuf; a 404 makes it fall back cleanly, JSON would not.
        Target::OpenApiV2 => Err(ApiError::NoSuchResource),
        Target::Resource(target) => {
            let (parts, body) = req.into_parts();
            let body = read_body(body, parts.method.clone()).await?;
            let request = handler::Request {
                state,
                target,
                query: Query::parse(parts.uri.query()),
                headers: &parts.headers,
            };
            handler::handle(request, &parts.method, body).await
        }
    }
}

async fn read_body(body: Incoming, method: Method) -> Result<Bytes, ApiError> {
    if method == Method::GET {
        return Ok(Bytes::new());
    }
    match Limited::new(body, handler::MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::TooLarge {
                limit: handler::MAX_BODY_BYTES,
            })
        }
        Err(e) => Err(ApiError::BadRequest(format!(
            "reading the request body: {e}"
        ))),
    }
}

fn into_response(reply: Reply) -> Response<Body> {
    let body: Body = match reply.body {
        ReplyBody::Full(b) => Full::new(b).boxed_unsync(),
        ReplyBody::Stream(rx) => {
            StreamBody::new(rx.map(|b| Ok::<_, Infallible>(Frame::data(b)))).boxed_unsync()
        }
    };
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(http::header::CONTENT_TYPE, reply.content_type)
        .header(
            "Cache-Control",
            if reply.cache_immutable {
                "public, immutable"
            } else {
                "no-cache, private"
            },
        );
    for w in &reply.warnings {
        // Warning values are ours (unknown field paths); quotes and backslashes are escaped per RFC 7234.
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        builder = builder.header("Warning", format!("299 - \"{escaped}\""));
    }
    builder.body(body).unwrap_or_else(|_| {
        let mut r = Response::new(Full::new(Bytes::from_static(b"internal error")).boxed_unsync());
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}
