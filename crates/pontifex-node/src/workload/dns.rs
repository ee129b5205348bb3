//! A pod's `/etc/resolv.conf` and `/etc/hosts`, as the kubelet writes them: the content per `dnsPolicy`
//! (`ClusterFirst` — the default —, `ClusterFirstWithHostNet`, `Default`, `None`) merged with
//! `dnsConfig`, and the kubelet-managed hosts file. Pure: the node's own resolv.conf comes in as text;
//! writing the files and bind-mounting them is the agent's and [`super::process`]'s.

use k8s_openapi::api::core::v1::Pod;

/// The kubelet's limits on what a resolv.conf may hold (beyond them, entries are dropped).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// The DNS settings of the node (kubelet's `--cluster-dns`, `--cluster-domain`, `--resolv-conf`).
#[derive(Debug, Clone, Default)]
pub struct NodeDns {
    /// The cluster DNS addresses; empty: `ClusterFirst` pods fall back to `Default`.
    pub cluster_dns: Vec<String>,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// The content of the node's own resolv.conf.
    pub host_resolv_conf: String,
}

/// A resolv.conf's content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines.
    pub nameservers: Vec<String>,
    /// The `search` list.
    pub searches: Vec<String>,
    /// `options`, as `name` or `name:value`.
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses resolv.conf text (`domain` counts as a one-entry search list, as in glibc).
    pub fn parse(text: &str) -> ResolvConf {
        let mut out = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => out.nameservers.extend(words.next().map(str::to_owned)),
                Some("search") => out.searches = words.map(str::to_owned).collect(),
                Some("domain") => {
                    out.searches = words.next().map(str::to_owned).into_iter().collect()
                }
                Some("options") => out.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        out
    }

    /// The file text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for n in &self.nameservers {
            s.push_str(&format!("nameserver {n}\n"));
        }
        if !self.searches.is_empty() {
            s.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        if !self.options.is_empty() {
            s.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        s
    }
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for i in items {
        if !list.contains(&i) {
            list.push(i);
        }
    }
}

/// The resolv.conf of `pod` on a node with `node` settings.
pub fn resolv_conf(pod: &Pod, node: &NodeDns) -> ResolvConf {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network == Some(true);
    let host = ResolvConf::parse(&node.host_resolv_conf);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        // ClusterFirst of a hostNetwork pod is Default (kubelet), as is one without cluster DNS.
        "ClusterFirst" => !host_network,
        _ => false,
    } && !node.cluster_dns.is_empty();
    let mut out = if policy == "None" {
        ResolvConf::default()
    } else if cluster {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let d = &node.cluster_domain;
        let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
        push_unique(&mut searches, host.searches.clone());
        ResolvConf {
            nameservers: node.cluster_dns.clone(),
            searches,
            options: vec!["ndots:5".into()],
        }
    } else {
        host
    };
    if let Some(cfg) = &spec.dns_config {
        push_unique(
            &mut out.nameservers,
            cfg.nameservers.clone().unwrap_or_default(),
        );
        push_unique(&mut out.searches, cfg.searches.clone().unwrap_or_default());
        for o in cfg.options.iter().flatten() {
            let Some(name) = &o.name else { continue };
            // A pod option replaces one of the same name.
            out.options
                .retain(|x| x.split(':').next() != Some(name.as_str()));
            out.options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.clone(),
            });
        }
    }
    out.nameservers.truncate(MAX_NAMESERVERS);
    out.searches.truncate(MAX_SEARCHES);
    out
}

/// The kubelet-managed `/etc/hosts` of a pod with its own network (hostNetwork pods see the node's):
/// the loopback and IPv6 entries, a line per pod IP (primary first; two on a dual-stack node) with
/// the pod's hostname (fully qualified first when the pod has a `subdomain`), then `hostAliases`.
pub fn hosts_file(pod: &Pod, pod_ips: &[String], cluster_domain: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let hostname = spec.hostname.clone().unwrap_or(name);
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    for pod_ip in pod_ips {
        match &spec.subdomain {
            Some(sub) if !sub.is_empty() => {
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                s.push_str(&format!(
                    "{pod_ip}\t{hostname}.{sub}.{ns}.svc.{cluster_domain}\t{hostname}\n"
                ));
            }
            _ => s.push_str(&format!("{pod_ip}\t{hostname}\n")),
        }
    }
    for alias in spec.host_aliases.iter().flatten() {
        let names = alias.hostnames.clone().unwrap_or_default();
        if !names.is_empty() {
            s.push_str(&format!(
                "\n# Entries added by HostAliases.\n{}\t{}\n",
                alias.ip,
                names.join("\t")
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests;
