//! The environment a container starts with, computed as the kubelet does (`pkg/kubelet/envvars` and
//! `makeEnvironmentVariables`):
//!
//! - **Service links**: for every Service with a cluster IP (not `None`, not empty) in the pod's namespace
//!   when `enableServiceLinks` is on (the default), and always for `default/kubernetes`:
//!   `{SVC}_SERVICE_HOST`, `{SVC}_SERVICE_PORT` (first port), `{SVC}_SERVICE_PORT_{NAME}` (named ports),
//!   and Docker-link style `{SVC}_PORT`, `{SVC}_PORT_{port}_{PROTO}` with `_PROTO`, `_PORT`, `_ADDR`.
//!   Names are upper-cased with `-` turned into `_`. A Service of the pod's namespace named `kubernetes`
//!   does not replace the master one.
//! - **The container's own** `envFrom` (ConfigMaps and Secrets, optional prefix, invalid names skipped),
//!   then `env`: `value` with `$(VAR)` expansion against the variables declared before it and the service
//!   variables (`$$` escapes, unknown references stay as written), or `valueFrom` (`fieldRef`,
//!   `configMapKeyRef`, `secretKeyRef`, honouring `optional`). Declared variables win over service ones.
//!
//! Pure: ConfigMaps and Secrets come through [`ObjectLookup`], addresses through [`PodAddresses`].
//! Not supported: `resourceFieldRef` (no resource limits here) — it is an error.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};

/// Where ConfigMaps and Secrets of the pod's namespace come from (the agent's informer cache).
pub trait ObjectLookup {
    /// The ConfigMap `namespace/name`, if it exists.
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap>;
    /// The Secret `namespace/name`, if it exists.
    fn secret(&self, namespace: &str, name: &str) -> Option<Secret>;
}

/// A lookup that finds nothing (pods that reference no ConfigMap or Secret).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObjects;

impl ObjectLookup for NoObjects {
    fn config_map(&self, _: &str, _: &str) -> Option<ConfigMap> {
        None
    }
    fn secret(&self, _: &str, _: &str) -> Option<Secret> {
        None
    }
}

/// The addresses the downward API exposes, known to the agent before the pod status carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodAddresses {
    /// The pod's IPs, primary first.
    pub pod_ips: Vec<String>,
    /// The node's IPs, primary first.
    pub host_ips: Vec<String>,
}

/// Why a container's environment could not be built (the kubelet then fails the container start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// A non-optional ConfigMap or Secret does not exist.
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        /// "configmap" or "secret".
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A non-optional key is missing from an existing ConfigMap or Secret.
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey {
        /// "ConfigMap" or "Secret".
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The key.
        key: String,
    },
    /// A `fieldRef` path the downward API does not offer for environment variables.
    #[error("unsupported fieldPath {0:?}")]
    UnsupportedField(String),
    /// `resourceFieldRef`, which pontifex does not support.
    #[error("resourceFieldRef is not supported (variable {0})")]
    ResourceField(String),
}

/// The kubelet's variable-name form of a Service or port name.
pub fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

fn is_ip_set(svc: &Service) -> bool {
    let ip = svc
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .unwrap_or("");
    !ip.is_empty() && ip != "None"
}

/// The variables of one Service (`FromServices` for one item); empty without a cluster IP or ports.
pub fn service_vars(svc: &Service) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(spec) = &svc.spec else { return out };
    let (Some(ip), Some(ports)) = (spec.cluster_ip.as_deref(), spec.ports.as_deref()) else {
        return out;
    };
    if !is_ip_set(svc) || ports.is_empty() {
        return out;
    }
    let prefix = env_name(svc.metadata.name.as_deref().unwrap_or(""));
    out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
    out.push((format!("{prefix}_SERVICE_PORT"), ports[0].port.to_string()));
    for p in ports {
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((
                format!("{prefix}_SERVICE_PORT_{}", env_name(name)),
                p.port.to_string(),
            ));
        }
    }
    for (i, p) in ports.iter().enumerate() {
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        let (lower, upper) = (proto.to_lowercase(), proto.to_uppercase());
        let url = format!("{lower}://{ip}:{}", p.port);
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let pp = format!("{prefix}_PORT_{}_{upper}", p.port);
        out.push((pp.clone(), url));
        out.push((format!("{pp}_PROTO"), lower));
        out.push((format!("{pp}_PORT"), p.port.to_string()));
        out.push((format!("{pp}_ADDR"), ip.to_string()));
    }
    out
}

/// The service variables a pod in `namespace` sees (`getServiceEnvVarMap`): `services` is every
/// Service the agent knows, of any namespace.
pub fn service_env(
    services: &[Service],
    namespace: &str,
    enable_service_links: bool,
) -> BTreeMap<String, String> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for svc in services.iter().filter(|s| is_ip_set(s)) {
        let name = svc.metadata.name.as_deref().unwrap_or("");
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        if ns == "default" && name == "kubernetes" {
            // The master service always wins over a same-named Service of the pod's namespace.
            chosen.insert(name, svc);
        } else if ns == namespace && enable_service_links {
            let master_taken = chosen.get(name).is_some_and(|s| {
                s.metadata.namespace.as_deref() == Some("default") && name == "kubernetes"
            });
            if !master_taken {
                chosen.insert(name, svc);
            }
        }
    }
    chosen.values().flat_map(|s| service_vars(s)).collect()
}

/// The kubelet's `$(VAR)` expansion: `$(NAME)` is replaced when `lookup` knows `NAME` and kept verbatim
/// otherwise; `$$` is a literal `$`; any other `$` (and an unclosed `$(`) is kept as written.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            out.push_str(&input[checkpoint..i]);
            let rest = &input[i + 1..];
            let advance = match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match lookup(name) {
                            Some(v) => out.push_str(&v),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // Keep `$` and the next character (which may be multi-byte) untouched.
                    let c = rest.chars().next().map_or(1, char::len_utf8);
                    out.push('$');
                    out.push_str(&rest[..c]);
                    c
                }
            };
            i += advance + 1;
            checkpoint = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&input[checkpoint..]);
    out
}

/// `IsEnvVarName`: letters, digits, `_`, `-`, `.`, not starting with a digit.
fn is_env_var_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    // The downward API's form of a whole map: `key="value"` lines, sorted.
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn subscript<'a>(path: &'a str, field: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(field)?.strip_prefix("['")?;
    rest.strip_suffix("']")
}

/// The value of a `fieldRef` for `pod`.
pub fn field_value(pod: &Pod, path: &str, addrs: &PodAddresses) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let v = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => addrs.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => addrs.pod_ips.join(","),
        "status.hostIP" => addrs.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => addrs.host_ips.join(","),
        _ => {
            if let Some(key) = subscript(path, "metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(key))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(key) = subscript(path, "metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|l| l.get(key))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(EnvError::UnsupportedField(path.to_string()));
            }
        }
    };
    Ok(v)
}

/// A name-ordered environment that keeps the position of the first declaration when a later one
/// replaces its value (the kubelet's map has no order; this one is stable for tests and `exec`).
#[derive(Default)]
struct OrderedEnv {
    order: Vec<String>,
    values: BTreeMap<String, String>,
}

impl OrderedEnv {
    fn set(&mut self, k: String, v: String) {
        if !self.values.contains_key(&k) {
            self.order.push(k.clone());
        }
        self.values.insert(k, v);
    }
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

fn secret_data(s: &Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = s.string_data.clone().unwrap_or_default();
    for (k, v) in s.data.iter().flatten() {
        out.insert(k.clone(), String::from_utf8_lossy(&v.0).into_owned());
    }
    out
}

/// The whole environment of `container` in `pod`: `envFrom`, then `env`, then the service variables
/// not declared by the container (`service_env` from [`service_env`]).
pub fn container_env(
    pod: &Pod,
    container: &Container,
    service_env: &BTreeMap<String, String>,
    objects: &dyn ObjectLookup,
    addrs: &PodAddresses,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let not_found = |kind, name: &str| EnvError::NotFound {
        kind,
        namespace: ns.to_string(),
        name: name.to_string(),
    };
    let mut env = OrderedEnv::default();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let data = if let Some(r) = &from.config_map_ref {
            match objects.config_map(ns, &r.name) {
                Some(cm) => config_map_data(&cm),
                None if r.optional == Some(true) => continue,
                None => return Err(not_found("configmap", &r.name)),
            }
        } else if let Some(r) = &from.secret_ref {
            match objects.secret(ns, &r.name) {
                Some(s) => secret_data(&s),
                None if r.optional == Some(true) => continue,
                None => return Err(not_found("secret", &r.name)),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            let k = format!("{prefix}{k}");
            if is_env_var_name(&k) {
                env.set(k, v);
            } else {
                tracing::warn!(key = %k, "envFrom key is not a valid variable name, skipped");
            }
        }
    }
    let mut services = service_env.clone();
    for var in container.env.iter().flatten() {
        let value = var.value.as_deref().unwrap_or("");
        let resolved = if !value.is_empty() {
            expand(value, |name| {
                env.values.get(name).or_else(|| services.get(name)).cloned()
            })
        } else if let Some(from) = &var.value_from {
            if let Some(f) = &from.field_ref {
                field_value(pod, &f.field_path, addrs)?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                match objects.config_map(ns, &r.name) {
                    None if optional => continue,
                    None => return Err(not_found("configmap", &r.name)),
                    Some(cm) => match config_map_data(&cm).remove(&r.key) {
                        Some(v) => v,
                        None if optional => continue,
                        None => {
                            return Err(EnvError::MissingKey {
                                kind: "ConfigMap",
                                namespace: ns.into(),
                                name: r.name.clone(),
                                key: r.key.clone(),
                            });
                        }
                    },
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                match objects.secret(ns, &r.name) {
                    None if optional => continue,
                    None => return Err(not_found("secret", &r.name)),
                    Some(s) => match secret_data(&s).remove(&r.key) {
                        Some(v) => v,
                        None if optional => continue,
                        None => {
                            return Err(EnvError::MissingKey {
                                kind: "Secret",
                                namespace: ns.into(),
                                name: r.name.clone(),
                                key: r.key.clone(),
                            });
                        }
                    },
                }
            } else if from.resource_field_ref.is_some() {
                return Err(EnvError::ResourceField(var.name.clone()));
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        services.remove(&var.name);
        env.set(var.name.clone(), resolved);
    }
    let mut out: Vec<(String, String)> = env
        .order
        .into_iter()
        .map(|k| {
            let v = env.values[&k].clone();
            (k, v)
        })
        .collect();
    let declared: std::collections::HashSet<String> = out.iter().map(|(k, _)| k.clone()).collect();
    out.extend(services.into_iter().filter(|(k, _)| !declared.contains(k)));
    Ok(out)
}

/// What a container runtime adds: `HOSTNAME` (the pod's hostname) and `PATH` (normally from the image),
/// unless the container set them.
pub fn with_runtime_defaults(
    mut env: Vec<(String, String)>,
    hostname: &str,
) -> Vec<(String, String)> {
    if !env.iter().any(|(k, _)| k == "HOSTNAME") {
        env.insert(0, ("HOSTNAME".into(), hostname.into()));
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), super::process::DEFAULT_PATH.into()));
    }
    env
}

#[cfg(test)]
mod tests;
