//! The Kubernetes-compatible HTTPS API of pontifex: what the real `kubectl` and kube-rs clients talk to.
//!
//! It serves `/version`, discovery (legacy and aggregated v2), OpenAPI v3, and for every kind in the
//! registry of `pontifex-api` the full verb set — get, list, watch, create, update, patch (strategic
//! merge, JSON merge, JSON patch, server-side apply), delete — with server-side Table printing, field
//! validation, `dryRun`, and Kubernetes `Status` errors. Services get their cluster IPs and node ports
//! here, allocated in the same store transaction as the write (see `admission`).
//!
//! What it does not do: protobuf, RBAC (one bearer token, all-powerful), API aggregation, CRDs,
//! managedFields ownership in server-side apply. The data lives in a [`pontifex_store::Store`].
#![forbid(unsafe_code)]

mod admission;
mod binding;
mod bootstrap;
mod discovery;
mod handler;
mod objects;
mod podlog;
mod ranges;
mod request;
mod scale;
mod select;
mod server;
mod table;
mod tls;
mod watch;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pontifex_api::cidr::DualStackCidrs;
use pontifex_store::Store;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use handler::Applied;
pub use ranges::{
    DEFAULT_SERVICE_CLUSTER_IP_RANGE, ServiceRangeError, parse_service_cluster_ip_range,
};
pub use tls::{Credentials, kubeconfig};

/// Settings, named after kube-apiserver's flags.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--bind-address`: where to listen (loopback by default, so nothing is exposed by accident).
    pub bind_address: IpAddr,
    /// `--secure-port`: 6443; 0 picks a free port (tests).
    pub secure_port: u16,
    /// `--advertise-address`: the address published in the `default/kubernetes` endpoints.
    pub advertise_address: Option<IpAddr>,
    /// `--service-cluster-ip-range`: one range, or one per IP family (the first is the primary family,
    /// which single-stack Services get by default). Parse with [`parse_service_cluster_ip_range`].
    pub service_cluster_ip_range: DualStackCidrs,
    /// `--service-node-port-range`, inclusive.
    pub service_node_port_range: (u16, u16),
    /// `--cert-dir`: where the CA, keys and token are kept.
    pub cert_dir: PathBuf,
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
}

impl Config {
    /// Kubernetes' defaults, with credentials under `cert_dir`.
    pub fn new(cert_dir: PathBuf) -> Self {
        Config {
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            secure_port: 6443,
            advertise_address: None,
            service_cluster_ip_range: parse_service_cluster_ip_range(
                DEFAULT_SERVICE_CLUSTER_IP_RANGE,
            )
            .expect("valid default range"),
            service_node_port_range: (30000, 32767),
            cert_dir,
            bookmark_interval: Duration::from_secs(60),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listening socket could not be bound, or credentials could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The start-up objects (namespaces, the `kubernetes` Service) or the allocation repair failed.
    #[error("start-up: {0}")]
    Bootstrap(String),
}

/// A bound, ready API server. Create with [`ApiServer::bind`], run with [`ApiServer::serve`].
pub struct ApiServer {
    state: Arc<server::State>,
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    credentials: Credentials,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Bind the port, load or create credentials, create the start-up objects and repair allocations.
    /// `shutdown` stops the server (and ends every watch) when cancelled.
    pub async fn bind(
        config: Config,
        store: Arc<dyn Store>,
        shutdown: CancellationToken,
    ) -> Result<Self, Error> {
        let listener =
            TcpListener::bind(SocketAddr::new(config.bind_address, config.secure_port)).await?;
        let local = listener.local_addr()?;
        let allocator = admission::Allocator::new(
            config.service_cluster_ip_range,
            config.service_node_port_range,
        );
        let first_ip = allocator.first_ip();
        let mut ips = vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "::1".parse().expect("valid"),
            first_ip,
        ];
        for ip in [Some(config.bind_address), config.advertise_address]
            .into_iter()
            .flatten()
        {
            if !ip.is_unspecified() && !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        let names: Vec<String> = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        let credentials = tls::load_or_create(&config.cert_dir, &names, &ips)?;
        let tls = tokio_rustls::TlsAcceptor::from(tls::server_config(&credentials)?);
        let advertise = config
            .advertise_address
            .or_else(|| (!config.bind_address.is_unspecified()).then_some(config.bind_address))
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let state = Arc::new(server::State {
            store,
            allocator,
            token: credentials.token.clone(),
            shutdown,
            bookmark_interval: config.bookmark_interval,
            server_address: SocketAddr::new(advertise, local.port()).to_string(),
        });
        bootstrap::run(&state, advertise, local.port())
            .await
            .map_err(|e| Error::Bootstrap(e.to_string()))?;
        Ok(ApiServer {
            state,
            listener,
            tls,
            credentials,
        })
    }

    /// The address the server listens on (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The CA, serving certificate and bearer token.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// A kubeconfig that reaches this server over loopback (or the bind address when it is not loopback).
    pub fn kubeconfig(&self) -> String {
        let addr = self.local_addr();
        let host = if addr.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            addr.ip()
        };
        kubeconfig(
            &format!("https://{}", SocketAddr::new(host, addr.port())),
            &self.credentials,
        )
    }

    /// Apply one manifest in-process, as `kubectl apply --server-side` would, with strict field validation.
    /// Returns kubectl's `kind/name` and what happened.
    pub async fn apply(
        &self,
        manifest: Value,
    ) -> Result<(String, Applied), pontifex_api::status::ApiError> {
        let (kind, name, outcome) = handler::apply_manifest(&self.state, manifest).await?;
        Ok((format!("{kind}/{name}"), outcome))
    }

    /// Serve until the shutdown token is cancelled, then finish in-flight requests.
    pub async fn serve(self) -> Result<(), Error> {
        server::serve(self.state, self.listener, self.tls)
            .await
            .map_err(Error::Io)
    }
}

/// A response before it becomes HTTP.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) body: ReplyBody,
    /// `Warning: 299` headers.
    pub(crate) warnings: Vec<String>,
    /// `Cache-Control: public, immutable` (content-addressed documents) instead of `no-cache, private`.
    pub(crate) cache_immutable: bool,
}

pub(crate) enum ReplyBody {
    Full(Bytes),
    /// Watch events, one JSON line each, sent as they come.
    Stream(futures::channel::mpsc::Receiver<Bytes>),
}

impl Reply {
    pub(crate) fn json(status: u16, v: &Value) -> Self {
        Reply::bytes(
            status,
            "application/json",
            Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        )
    }

    pub(crate) fn text(status: u16, s: &'static str) -> Self {
        Reply::bytes(
            status,
            "text/plain; charset=utf-8",
            Bytes::from_static(s.as_bytes()),
        )
    }

    pub(crate) fn bytes(status: u16, content_type: &str, body: Bytes) -> Self {
        Reply {
            status,
            content_type: content_type.to_owned(),
            body: ReplyBody::Full(body),
            warnings: Vec::new(),
            cache_immutable: false,
        }
    }

    pub(crate) fn content_type(mut self, ct: String) -> Self {
        self.content_type = ct;
        self
    }

    pub(crate) fn cache_immutable(mut self) -> Self {
        self.cache_immutable = true;
        self
    }

    pub(crate) fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings;
        self
    }
}
