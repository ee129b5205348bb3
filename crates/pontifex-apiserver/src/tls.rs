//! Serving credentials: a cluster CA kept in the data directory, a serving certificate signed by it at
//! every start (so a changed bind address never leaves a stale SAN behind), the bearer token, and the
//! kubeconfig that ties them together for kubectl.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Everything a client needs to trust and authenticate to the server, and the server's own key material.
#[derive(Clone)]
pub struct Credentials {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The bearer token every request (but the public health and version endpoints) must carry.
    pub token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "pontifex-ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn tls_err(e: rcgen::Error) -> io::Error {
    io::Error::other(format!("certificate generation: {e}"))
}

/// Write a file readable only by its owner: keys and tokens.
fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    io::Write::write_all(&mut f, contents.as_bytes())?;
    f.sync_all()
}

/// Load the CA and token from `dir` (creating them on first start) and sign a serving certificate for
/// `dns_names` and `ips`.
pub(crate) fn load_or_create(
    dir: &Path,
    dns_names: &[String],
    ips: &[IpAddr],
) -> io::Result<Credentials> {
    fs::create_dir_all(dir)?;
    let (ca_crt, ca_key, token) = (dir.join("ca.crt"), dir.join("ca.key"), dir.join("token"));
    if !ca_crt.exists() || !ca_key.exists() {
        let key = KeyPair::generate().map_err(tls_err)?;
        let cert = ca_params()
            .map_err(tls_err)?
            .self_signed(&key)
            .map_err(tls_err)?;
        write_private(&ca_key, &key.serialize_pem())?;
        fs::write(&ca_crt, cert.pem())?;
    }
    if !token.exists() {
        let bytes: [u8; 32] = rand::random();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_private(&token, &hex)?;
    }
    let ca_pem = fs::read_to_string(&ca_crt)?;
    let ca_key_pair = KeyPair::from_pem(&fs::read_to_string(&ca_key)?).map_err(tls_err)?;
    // The issuer's name must equal the CA certificate's subject; both come from `ca_params`.
    let issuer = Issuer::new(ca_params().map_err(tls_err)?, ca_key_pair);

    let mut params = CertificateParams::new(dns_names.to_vec()).map_err(tls_err)?;
    for ip in ips {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(*ip));
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kube-apiserver");
    params.distinguished_name = dn;
    let key = KeyPair::generate().map_err(tls_err)?;
    let cert = params.signed_by(&key, &issuer).map_err(tls_err)?;
    Ok(Credentials {
        ca_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        token: fs::read_to_string(&token)?.trim().to_owned(),
    })
}

/// The rustls configuration: the serving certificate, ALPN `h2` then `http/1.1`, as kube-apiserver offers.
pub(crate) fn server_config(creds: &Credentials) -> io::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(creds.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| io::Error::other(format!("serving certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(creds.key_pem.as_bytes())
        .map_err(|e| io::Error::other(format!("serving key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(io::Error::other)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A kubeconfig for `server` (an `https://host:port` URL) with the CA inline and the bearer token.
pub fn kubeconfig(server: &str, creds: &Credentials) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(creds.ca_pem.as_bytes());
    // Every value is ours (a URL we built, base64, hex), so no YAML quoting issue can arise; still, the
    // server URL is quoted.
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: pontifex\n  cluster:\n    server: \"{server}\"\n    certificate-authority-data: {ca}\ncontexts:\n- name: pontifex\n  context:\n    cluster: pontifex\n    user: admin\n    namespace: default\ncurrent-context: pontifex\nusers:\n- name: admin\n  user:\n    token: {token}\n",
        token = creds.token
    )
}
