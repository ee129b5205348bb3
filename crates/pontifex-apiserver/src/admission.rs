//! Service admission: cluster IPs and node ports, allocated transactionally with the write.
//!
//! Every allocated address and port is a key of its own in the store (`/ranges/serviceips/<ip>`,
//! `/ranges/servicenodeports/<port>`, valued with the owner `namespace/name`), written in the SAME
//! transaction as the Service, guarded by "key absent" comparisons. So an allocation can neither be
//! handed out twice (the comparison fails) nor leak (it commits or vanishes with the Service), even with
//! several API servers on one store. The in-memory sets here are only a hint for picking free values;
//! the store decides, and a lost race is retried with another value. This is the shape of Kubernetes'
//! own IPAddress-object allocator.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use bytes::Bytes;
use ipnet::IpNet;
use pontifex_api::cidr::{DualStackCidrs, IpFamily};
use pontifex_api::field::{FieldError, Path};
use pontifex_store::{Compare, Op};
use serde_json::{Value, json};

pub(crate) const IP_PREFIX: &str = "/ranges/serviceips/";
pub(crate) const PORT_PREFIX: &str = "/ranges/servicenodeports/";

/// A value claimed by a Service write, so a failed comparison can be explained.
#[derive(Debug, Clone)]
pub(crate) struct Claim {
    pub(crate) key: String,
    /// The user asked for exactly this value: a conflict is their error, not a reason to retry.
    pub(crate) chosen: bool,
    pub(crate) error: FieldError,
}

/// The store operations that go with one Service write.
#[derive(Debug, Default)]
pub(crate) struct Allocation {
    pub(crate) claims: Vec<Claim>,
    pub(crate) releases: Vec<String>,
}

impl Allocation {
    pub(crate) fn compares(&self) -> impl Iterator<Item = Compare> + '_ {
        self.claims.iter().map(|c| Compare::Absent(c.key.clone()))
    }

    pub(crate) fn ops(&self, owner: &str) -> Vec<Op> {
        let owner = Bytes::from(owner.to_owned());
        let mut ops: Vec<Op> = self
            .claims
            .iter()
            .map(|c| Op::Put {
                key: c.key.clone(),
                value: owner.clone(),
            })
            .collect();
        ops.extend(self.releases.iter().map(|k| Op::Delete { key: k.clone() }));
        ops
    }
}

/// One IP family's Service range, as upstream's bitmap allocator sees it: the usable addresses are
/// `count` consecutive addresses from the one after the network address. IPv4 loses the broadcast
/// address; IPv6 has none, but upstream caps an IPv6 range at 65536 addresses (the bitmap's size), so
/// the set of usable addresses is always small and nothing here is ever proportional to 2^64.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IpRange {
    cidr: IpNet,
    /// The first usable address (network + 1), as an integer.
    first: u128,
    /// How many usable addresses follow from `first`.
    count: u128,
    /// The size of the lower band, kept for addresses users pick (KEP-3070 `calculateRangeOffset`).
    lower: u128,
}

/// Upstream's cap on an IPv6 range (the bitmap allocator's size).
const MAX_V6_RANGE: u128 = 1 << 16;

impl IpRange {
    pub(crate) fn new(cidr: IpNet) -> Self {
        let cidr = cidr.trunc();
        let host_bits = u32::from(cidr.max_prefix_len() - cidr.prefix_len());
        // 2^128 does not fit: any range that large is capped anyway.
        let size = 1u128.checked_shl(host_bits).unwrap_or(u128::MAX);
        let count = match cidr {
            IpNet::V4(_) => size.saturating_sub(2),
            IpNet::V6(_) => size.min(MAX_V6_RANGE).saturating_sub(1),
        };
        // `min(max(16, size/16), 256)`, none for ranges of 16 addresses or fewer; the size is the
        // CIDR's, uncapped.
        let lower = if size <= 16 {
            0
        } else {
            (size / 16).clamp(16, 256)
        };
        IpRange {
            cidr,
            first: addr_bits(&cidr.network()) + 1,
            count,
            lower: lower.min(count),
        }
    }

    pub(crate) fn cidr(&self) -> IpNet {
        self.cidr
    }

    fn family(&self) -> IpFamily {
        IpFamily::of_net(&self.cidr)
    }

    fn at(&self, offset: u128) -> IpAddr {
        let bits = self.first + offset;
        match self.cidr {
            IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(bits as u32)),
            IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(bits)),
        }
    }

    /// The first usable address: the `default/kubernetes` Service's.
    pub(crate) fn first_ip(&self) -> IpAddr {
        self.at(0)
    }

    /// Whether `ip` is one of the range's usable addresses.
    pub(crate) fn contains(&self, ip: &IpAddr) -> bool {
        self.cidr.contains(ip) && {
            let bits = addr_bits(ip);
            bits >= self.first && bits - self.first < self.count
        }
    }

    /// A free address, the upper band first (so the lower band stays free for addresses users pick),
    /// from a random start within each band.
    fn pick(&self, taken: impl Fn(&IpAddr) -> bool) -> Option<IpAddr> {
        pick_banded(self.lower, self.count, |off| !taken(&self.at(off))).map(|off| self.at(off))
    }
}

/// A free offset in `0..count`: the upper band `lower..count` first, then the lower band, each
/// scanned from a random start. Dynamic allocation leaves the lower band to values users pick, as
/// upstream does for ClusterIPs (KEP-3070) and node ports (KEP-3668), so a Service that names its
/// address or port rarely finds it taken by a random one.
fn pick_banded(lower: u128, count: u128, free: impl Fn(u128) -> bool) -> Option<u128> {
    let scan = |from: u128, to: u128| -> Option<u128> {
        if from >= to {
            return None;
        }
        let start = from + rand::random::<u64>() as u128 % (to - from);
        (start..to).chain(from..start).find(|&off| free(off))
    };
    scan(lower, count).or_else(|| scan(0, lower))
}

/// The node-port range's lower band, kept for ports users pick: kube-apiserver's
/// `calculateRangeOffset` for ports, `min(max(16, size/32), 128)`, none below 16 ports.
fn node_port_lower_band(size: u128) -> u128 {
    if size < 16 {
        0
    } else {
        (size / 32).clamp(16, 128)
    }
}

fn addr_bits(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

/// Picks free cluster IPs (from one range per IP family) and node ports. Thread-safe; the store has
/// the final word.
#[derive(Debug)]
pub(crate) struct Allocator {
    /// The ranges, the primary family's first.
    ranges: Vec<IpRange>,
    node_ports: (u16, u16),
    used_ips: Mutex<HashSet<IpAddr>>,
    used_ports: Mutex<HashSet<u16>>,
}

pub(crate) fn ip_key(ip: &IpAddr) -> String {
    format!("{IP_PREFIX}{ip}")
}

pub(crate) fn port_key(port: u16) -> String {
    format!("{PORT_PREFIX}{port}")
}

impl Allocator {
    pub(crate) fn new(cidrs: DualStackCidrs, node_ports: (u16, u16)) -> Self {
        Allocator {
            ranges: cidrs.iter().map(IpRange::new).collect(),
            node_ports,
            used_ips: Mutex::default(),
            used_ports: Mutex::default(),
        }
    }

    /// The range of one family, if the cluster has one.
    pub(crate) fn range(&self, family: IpFamily) -> Option<&IpRange> {
        self.ranges.iter().find(|r| r.family() == family)
    }

    /// The primary range.
    pub(crate) fn primary(&self) -> &IpRange {
        &self.ranges[0]
    }

    /// The first usable address of the primary range: the `default/kubernetes` Service's.
    pub(crate) fn first_ip(&self) -> IpAddr {
        self.primary().first_ip()
    }

    /// Note that the store holds this allocation key (at start-up, and after every committed write).
    pub(crate) fn observe(&self, key: &str, present: bool) {
        if let Some(ip) = key
            .strip_prefix(IP_PREFIX)
            .and_then(|s| s.parse::<IpAddr>().ok())
        {
            let mut used = self.used_ips.lock().expect("allocator lock");
            if present {
                used.insert(ip)
            } else {
                used.remove(&ip)
            };
        } else if let Some(port) = key
            .strip_prefix(PORT_PREFIX)
            .and_then(|s| s.parse::<u16>().ok())
        {
            let mut used = self.used_ports.lock().expect("allocator lock");
            if present {
                used.insert(port)
            } else {
                used.remove(&port)
            };
        }
    }

    fn pick_ip(&self, range: &IpRange) -> Option<IpAddr> {
        let used = self.used_ips.lock().expect("allocator lock");
        range.pick(|ip| used.contains(ip))
    }

    fn pick_port(&self, avoid: &HashSet<u16>) -> Option<u16> {
        let (lo, hi) = self.node_ports;
        let used = self.used_ports.lock().expect("allocator lock");
        let span = u128::from(hi - lo) + 1;
        let port = |off: u128| lo + off as u16;
        pick_banded(node_port_lower_band(span), span, |off| {
            let p = port(off);
            !used.contains(&p) && !avoid.contains(&p)
        })
        .map(port)
    }

    /// Allocate what `svc` needs, given the stored `old` version on update. Fills `spec.clusterIP(s)` and
    /// node ports into `svc`. Errors are field errors of the Service (422).
    ///
    /// `spec.ipFamilies` (set before validation) says which families get a cluster IP, in order;
    /// `spec.clusterIPs[i]`, when given, is the address wanted for `ipFamilies[i]`. An address the old
    /// version holds is kept without a claim (even if its family's range is gone); any other is
    /// claimed; an address the old version held and the new one does not is released (downgrade,
    /// ExternalName, headless).
    pub(crate) fn allocate(
        &self,
        svc: &mut Value,
        old: Option<&Value>,
    ) -> Result<Allocation, Vec<FieldError>> {
        let mut alloc = Allocation::default();
        let mut errors = Vec::new();
        let old_ips: HashSet<String> = old
            .map(cluster_ips)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let old_ports: HashSet<u16> = old
            .map(node_ports)
            .unwrap_or_default()
            .into_iter()
            .collect();

        // Cluster IPs, one per family.
        let mut new_ips: Vec<String> = Vec::new();
        if needs_cluster_ip(svc) {
            let mut families = ip_families(svc);
            if families.is_empty() {
                families.push(self.primary().family());
            }
            let mut wanted: Vec<String> = string_list(&svc["spec"]["clusterIPs"]);
            if wanted.is_empty()
                && let Some(ip) = svc["spec"]["clusterIP"].as_str()
                && !ip.is_empty()
            {
                wanted.push(ip.to_owned());
            }
            // Upstream reports the list with an empty marker where an address is still to be picked.
            wanted.resize(families.len().max(wanted.len()), String::new());
            let shown = wanted.clone();
            let field = Path::new("spec").child("clusterIPs");
            for (i, family) in families.iter().enumerate() {
                let requested = wanted[i].clone();
                if !requested.is_empty() && old_ips.contains(&requested) {
                    new_ips.push(requested);
                    continue;
                }
                let Some(range) = self.range(*family) else {
                    // `init_ip_families` refuses families the cluster has no range for.
                    errors.push(FieldError::invalid(
                        Path::new("spec").child("ipFamilies").index(i),
                        family.as_str(),
                        "not configured on this cluster",
                    ));
                    continue;
                };
                if requested.is_empty() {
                    match self.pick_ip(range) {
                        Some(ip) => {
                            alloc.claims.push(Claim {
                                key: ip_key(&ip),
                                chosen: false,
                                error: FieldError::invalid(
                                    field.clone(),
                                    vec![ip.to_string()],
                                    format!("failed to allocate IP {ip}: range is full"),
                                ),
                            });
                            new_ips.push(ip.to_string());
                        }
                        None => errors.push(FieldError::invalid(
                            field.clone(),
                            Vec::<String>::new(),
                            "failed to allocate a serviceIP: range is full",
                        )),
                    }
                    continue;
                }
                match requested.parse::<IpAddr>() {
                    Ok(ip) if range.contains(&ip) => alloc.claims.push(Claim {
                        key: ip_key(&ip),
                        chosen: true,
                        error: FieldError::invalid(
                            field.clone(),
                            shown.clone(),
                            format!("failed to allocate IP {requested}: provided IP is already allocated"),
                        ),
                    }),
                    Ok(_) => errors.push(FieldError::invalid(
                        field.clone(),
                        shown.clone(),
                        format!(
                            "failed to allocate IP {requested}: provided IP is not in the valid range. The range of valid IPs is {}",
                            range.cidr()
                        ),
                    )),
                    // Malformed addresses are validation's to report.
                    Err(_) => {}
                }
                new_ips.push(requested);
            }
            if let Some(first) = new_ips.first() {
                svc["spec"]["clusterIP"] = json!(first);
                svc["spec"]["clusterIPs"] = json!(new_ips);
            }
        }
        for ip in old_ips.iter().filter(|ip| !new_ips.contains(ip)) {
            if let Ok(ip) = ip.parse::<IpAddr>() {
                alloc.releases.push(ip_key(&ip));
            }
        }

        // Node ports, shared by protocols within one Service (the same number for TCP and UDP is allowed).
        let mut ports = PortClaims {
            allocator: self,
            old: &old_ports,
            kept: HashSet::new(),
            alloc: &mut alloc,
            errors: &mut errors,
        };
        let auto = needs_node_ports(svc);
        let explicit_ok = auto || svc["spec"]["type"] == "LoadBalancer";
        let n = svc["spec"]["ports"].as_array().map_or(0, Vec::len);
        for i in 0..n {
            let field = Path::new("spec").child("ports").index(i).child("nodePort");
            match svc["spec"]["ports"][i]["nodePort"]
                .as_u64()
                .map(|p| p as u16)
            {
                Some(p) if explicit_ok => ports.claim(p, field),
                None if auto => {
                    if let Some(p) = ports.pick(field) {
                        svc["spec"]["ports"][i]["nodePort"] = json!(p);
                    }
                }
                _ => {}
            }
        }
        if needs_health_check_port(svc) {
            let field = Path::new("spec").child("healthCheckNodePort");
            match svc["spec"]["healthCheckNodePort"]
                .as_u64()
                .map(|p| p as u16)
            {
                Some(p) => ports.claim(p, field),
                None => {
                    if let Some(p) = ports.pick(field) {
                        svc["spec"]["healthCheckNodePort"] = json!(p);
                    }
                }
            }
        }
        let kept = std::mem::take(&mut ports.kept);
        for p in old_ports.iter().filter(|p| !kept.contains(p)) {
            alloc.releases.push(port_key(*p));
        }
        if errors.is_empty() {
            Ok(alloc)
        } else {
            Err(errors)
        }
    }
}

impl Allocator {
    /// Upstream's `initIPFamilyFields`: default `ipFamilyPolicy` and `ipFamilies` from the cluster's
    /// ranges, check the families asked for exist here, and trim a dual-stack Service being downgraded
    /// to single-stack. Runs after scheme defaulting and before validation (upstream: in `BeginCreate`
    /// / `BeginUpdate`, before the strategy's validation), so its errors come first.
    pub(crate) fn init_ip_families(
        &self,
        svc: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), Vec<FieldError>> {
        if svc["spec"]["type"] == "ExternalName" {
            return Ok(());
        }
        // A PreferDualStack Service is not upgraded or downgraded just because the cluster's ranges
        // changed: only an explicit change of its fields does that.
        if let Some(old) = old
            && matching_prefer_dual_stack(svc, old)
        {
            return Ok(());
        }
        let spec = &mut svc["spec"];
        let policy_path = Path::new("spec").child("ipFamilyPolicy");
        if spec["ipFamilyPolicy"].is_null() {
            let policy = match old.map(|o| &o["spec"]["ipFamilyPolicy"]) {
                Some(p) if p.is_string() => p.clone(),
                _ if headless_selectorless(spec) => json!("RequireDualStack"),
                _ => json!("SingleStack"),
            };
            spec["ipFamilyPolicy"] = policy;
        }
        let errs = pontifex_api::validate_service_cluster_ips(spec);
        if !errs.is_empty() {
            return Err(errs);
        }
        let policy = spec["ipFamilyPolicy"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let single = policy == "SingleStack";
        let mut errs = Vec::new();

        if let Some(old) = old {
            let old_spec = &old["spec"];
            if single {
                // Clear intent: as long as the lists are unchanged, keep only the primary.
                for f in ["clusterIPs", "ipFamilies"] {
                    let list = string_list(&spec[f]);
                    if list.len() > 1 && list == string_list(&old_spec[f]) {
                        spec[f] = json!(&list[..1]);
                    }
                }
            } else {
                let reduced = |f: &str| {
                    let new = string_list(&spec[f]).len();
                    new > 0 && new < string_list(&old_spec[f]).len()
                };
                if reduced("clusterIPs") {
                    errs.push(FieldError::invalid(
                        policy_path.clone(),
                        policy.as_str(),
                        "must be 'SingleStack' to release the secondary cluster IP",
                    ));
                }
                if reduced("ipFamilies") {
                    errs.push(FieldError::invalid(
                        policy_path.clone(),
                        policy.as_str(),
                        "must be 'SingleStack' to release the secondary IP family",
                    ));
                }
            }
        }

        let cluster_ips = string_list(&spec["clusterIPs"]);
        let mut families = string_list(&spec["ipFamilies"]);
        if single {
            if cluster_ips.len() == 2 {
                errs.push(FieldError::invalid(
                    policy_path.clone(),
                    policy.as_str(),
                    "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
                ));
            }
            if families.len() == 2 {
                errs.push(FieldError::invalid(
                    policy_path.clone(),
                    policy.as_str(),
                    "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
                ));
            }
        }

        // The families of the addresses given, where ipFamilies does not say.
        for (i, ip) in cluster_ips.iter().enumerate() {
            if ip == "None" {
                break;
            }
            if i < families.len() {
                continue;
            }
            // Validation above accepted the address, so a colon means IPv6.
            let family = if ip.contains(':') {
                IpFamily::V6
            } else {
                IpFamily::V4
            };
            if self.range(family).is_none() {
                errs.push(FieldError::invalid(
                    Path::new("spec").child("clusterIPs").index(i),
                    cluster_ips.clone(),
                    format!("{family} is not configured on this cluster"),
                ));
            } else {
                families.push(family.as_str().to_owned());
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let primary = self.primary().family();

        // Headless without a selector: no address is allocated, so any families may be named, and
        // a dual-stack policy gets both even on a single-stack cluster (its endpoints may have both).
        if headless_selectorless(spec) {
            if families.is_empty() {
                families.push(primary.as_str().to_owned());
            }
            if families.len() < 2 && !single {
                let other = IpFamily::parse(&families[0]).unwrap_or(primary).other();
                families.push(other.as_str().to_owned());
            }
            spec["ipFamilies"] = json!(families);
            return Ok(());
        }

        if policy == "RequireDualStack" && self.ranges.len() < 2 {
            errs.push(FieldError::invalid(
                policy_path,
                policy.as_str(),
                "this cluster is not configured for dual-stack services",
            ));
        }
        for (i, f) in families.iter().enumerate() {
            if IpFamily::parse(f).and_then(|f| self.range(f)).is_none() {
                errs.push(FieldError::invalid(
                    Path::new("spec").child("ipFamilies").index(i),
                    f.as_str(),
                    "not configured on this cluster",
                ));
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        if families.is_empty() {
            families.push(primary.as_str().to_owned());
        }
        if !single && families.len() == 1 && self.ranges.len() == 2 {
            let other = IpFamily::parse(&families[0]).unwrap_or(primary).other();
            families.push(other.as_str().to_owned());
        }
        spec["ipFamilies"] = json!(families);
        Ok(())
    }
}

/// `clusterIP: None` and no selector.
fn headless_selectorless(spec: &Value) -> bool {
    spec["clusterIP"] == "None" && spec["selector"].as_object().is_none_or(|m| m.is_empty())
}

/// Upstream's `isMatchingPreferDualStackClusterIPFields`: an update of a PreferDualStack Service
/// that keeps its type (one with cluster IPs), policy, cluster IPs and families.
fn matching_prefer_dual_stack(svc: &Value, old: &Value) -> bool {
    let (new, old) = (&svc["spec"], &old["spec"]);
    let ty = |s: &Value| s["type"].as_str().unwrap_or("ClusterIP").to_owned();
    !new["ipFamilyPolicy"].is_null()
        && ty(new) == ty(old)
        && matches!(ty(new).as_str(), "ClusterIP" | "NodePort" | "LoadBalancer")
        && new["ipFamilyPolicy"] == "PreferDualStack"
        && (old["ipFamilyPolicy"].is_null() || old["ipFamilyPolicy"] == "PreferDualStack")
        && string_list(&new["clusterIPs"]) == string_list(&old["clusterIPs"])
        && string_list(&new["ipFamilies"]) == string_list(&old["ipFamilies"])
}

/// The strings of a JSON array (nothing for anything else).
fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `spec.ipFamilies`, the ones this server knows.
fn ip_families(svc: &Value) -> Vec<IpFamily> {
    string_list(&svc["spec"]["ipFamilies"])
        .iter()
        .filter_map(|f| IpFamily::parse(f))
        .collect()
}

/// The node ports of one Service being allocated: what it keeps, claims and picks.
struct PortClaims<'a> {
    allocator: &'a Allocator,
    /// The ports the stored version holds: keeping one needs no claim.
    old: &'a HashSet<u16>,
    /// Every port the new version holds.
    kept: HashSet<u16>,
    alloc: &'a mut Allocation,
    errors: &'a mut Vec<FieldError>,
}

impl PortClaims<'_> {
    /// Claim a port the user chose.
    fn claim(&mut self, p: u16, field: Path) {
        if !self.kept.insert(p) || self.old.contains(&p) {
            // Already ours (from the stored version, or another protocol of the same port in this one).
            return;
        }
        let (lo, hi) = self.allocator.node_ports;
        if p < lo || p > hi {
            let detail = format!(
                "provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
            );
            self.errors.push(FieldError::invalid(field, p, detail));
            return;
        }
        self.push(p, field, true);
    }

    /// Pick a free port for a field the user left empty.
    fn pick(&mut self, field: Path) -> Option<u16> {
        let Some(p) = self.allocator.pick_port(&self.kept) else {
            self.errors
                .push(FieldError::invalid(field, 0, "range is full"));
            return None;
        };
        self.kept.insert(p);
        self.push(p, field, false);
        Some(p)
    }

    fn push(&mut self, p: u16, field: Path, chosen: bool) {
        let error = FieldError::invalid(field, p, "provided port is already allocated");
        self.alloc.claims.push(Claim {
            key: port_key(p),
            chosen,
            error,
        });
    }
}

fn needs_cluster_ip(svc: &Value) -> bool {
    svc["spec"]["type"] != "ExternalName" && svc["spec"]["clusterIP"] != "None"
}

fn needs_node_ports(svc: &Value) -> bool {
    match svc["spec"]["type"].as_str() {
        Some("NodePort") => true,
        Some("LoadBalancer") => svc["spec"]["allocateLoadBalancerNodePorts"]
            .as_bool()
            .unwrap_or(true),
        _ => false,
    }
}

fn needs_health_check_port(svc: &Value) -> bool {
    svc["spec"]["type"] == "LoadBalancer" && svc["spec"]["externalTrafficPolicy"] == "Local"
}

/// The cluster IPs a stored Service holds.
pub(crate) fn cluster_ips(svc: &Value) -> Vec<String> {
    let ips: Vec<String> = svc["spec"]["clusterIPs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if !ips.is_empty() {
        return ips.into_iter().filter(|ip| ip != "None").collect();
    }
    svc["spec"]["clusterIP"]
        .as_str()
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(str::to_owned)
        .into_iter()
        .collect()
}

/// The node ports (including the health check port) a stored Service holds.
pub(crate) fn node_ports(svc: &Value) -> Vec<u16> {
    let mut out: Vec<u16> = svc["spec"]["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p["nodePort"].as_u64())
                .map(|p| p as u16)
                .collect()
        })
        .unwrap_or_default();
    out.extend(
        svc["spec"]["healthCheckNodePort"]
            .as_u64()
            .map(|p| p as u16),
    );
    out
}

/// Every allocation key a stored Service should own.
pub(crate) fn owned_keys(svc: &Value) -> Vec<String> {
    let mut keys: Vec<String> = cluster_ips(svc)
        .iter()
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .map(|ip| ip_key(&ip))
        .collect();
    let mut ports = node_ports(svc);
    ports.sort_unstable();
    ports.dedup();
    keys.extend(ports.into_iter().map(port_key));
    keys
}

/// What the real API server does to a Service update before validating it: keep allocated values the
/// new version left out (a PUT or apply without `clusterIP` or `nodePort` keeps them), and drop the
/// fields the new type no longer has (node ports when it stops being NodePort/LoadBalancer, the cluster
/// IP when it becomes ExternalName).
pub(crate) fn prepare_service_update(new: &mut Value, old: &Value) {
    let new_type = new["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_owned();
    let old_type = old["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_owned();
    normalize_cluster_ips(new, old);
    if new_type != "ExternalName" {
        let cleared = new["spec"]["clusterIP"].as_str().is_none_or(str::is_empty);
        if cleared
            && old["spec"]["clusterIP"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        {
            new["spec"]["clusterIP"] = old["spec"]["clusterIP"].clone();
            if new["spec"]["clusterIPs"]
                .as_array()
                .is_none_or(Vec::is_empty)
            {
                new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
            }
            for f in ["ipFamilies", "ipFamilyPolicy"] {
                if new["spec"][f].is_null() && !old["spec"][f].is_null() {
                    new["spec"][f] = old["spec"][f].clone();
                }
            }
        }
    } else if old_type != "ExternalName"
        && new["spec"]["clusterIP"] == old["spec"]["clusterIP"]
        && let Some(spec) = new["spec"].as_object_mut()
    {
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            spec.remove(f);
        }
    }
    let wants_ports = matches!(new_type.as_str(), "NodePort" | "LoadBalancer");
    let had_ports = matches!(old_type.as_str(), "NodePort" | "LoadBalancer");
    // As upstream: the node ports are dropped only if the update brings no node port the old version
    // did not hold (a new one is the user's explicit wish, and validation refuses it for the new type).
    let same_node_ports = {
        let olds: HashSet<Value> = port_node_ports(old).collect();
        port_node_ports(new).all(|p| olds.contains(&p))
    };
    if let Some(ports) = new["spec"]["ports"].as_array_mut() {
        for port in ports.iter_mut() {
            if wants_ports && port["nodePort"].is_null() {
                let same = old["spec"]["ports"].as_array().and_then(|olds| {
                    olds.iter().find(|o| {
                        o["port"] == port["port"]
                            && o["protocol"].as_str().unwrap_or("TCP")
                                == port["protocol"].as_str().unwrap_or("TCP")
                    })
                });
                if let Some(n) = same
                    .and_then(|o| o.get("nodePort"))
                    .filter(|n| !n.is_null())
                {
                    port["nodePort"] = n.clone();
                }
            } else if !wants_ports
                && had_ports
                && same_node_ports
                && let Some(p) = port.as_object_mut()
            {
                p.remove("nodePort");
            }
        }
    }
    let wants_hc = new_type == "LoadBalancer" && new["spec"]["externalTrafficPolicy"] == "Local";
    if wants_hc
        && new["spec"]["healthCheckNodePort"].is_null()
        && !old["spec"]["healthCheckNodePort"].is_null()
    {
        new["spec"]["healthCheckNodePort"] = old["spec"]["healthCheckNodePort"].clone();
    } else if !wants_hc
        && new["spec"]["healthCheckNodePort"] == old["spec"]["healthCheckNodePort"]
        && let Some(spec) = new["spec"].as_object_mut()
    {
        spec.remove("healthCheckNodePort");
    }
    // The other type-dependent fields, dropped when the type no longer has them and the user left them
    // as they were (so a NodePort Service can become ClusterIP by changing `type` alone).
    let mut drop = Vec::new();
    if old_type == "LoadBalancer" && new_type != "LoadBalancer" {
        for f in ["allocateLoadBalancerNodePorts", "loadBalancerClass"] {
            if new["spec"][f] == old["spec"][f] {
                drop.push(f);
            }
        }
    }
    if externally_accessible(old)
        && !externally_accessible(new)
        && new["spec"]["externalTrafficPolicy"] == old["spec"]["externalTrafficPolicy"]
    {
        drop.push("externalTrafficPolicy");
    }
    if let Some(spec) = new["spec"].as_object_mut() {
        for f in drop {
            spec.remove(f);
        }
    }
    // A load-balancer status means nothing once the Service is no longer a LoadBalancer.
    if new_type != "LoadBalancer"
        && let Some(status) = new.get_mut("status").and_then(Value::as_object_mut)
    {
        status.remove("loadBalancer");
    }
}

/// Upstream's `NormalizeClusterIPs` on update: guess what a client meant when it sent only one of
/// `clusterIP` and `clusterIPs` (an old client knows only the singular field).
fn normalize_cluster_ips(new: &mut Value, old: &Value) {
    let ip = |s: &Value| s["spec"]["clusterIP"].as_str().unwrap_or("").to_owned();
    let old_ips = string_list(&old["spec"]["clusterIPs"]);
    // A client that left `clusterIPs` out but kept `clusterIP`: it meant to keep them all.
    if !old_ips.is_empty()
        && string_list(&new["spec"]["clusterIPs"]).is_empty()
        && ip(old) == ip(new)
    {
        new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
    }
    if ip(old) != ip(new) {
        // Clearing `clusterIP` alone clears `clusterIPs` too (and the stored values come back below).
        if !ip(old).is_empty()
            && ip(new).is_empty()
            && string_list(&new["spec"]["clusterIPs"]) == old_ips
            && let Some(spec) = new["spec"].as_object_mut()
        {
            spec.remove("clusterIPs");
        }
        // Changing `clusterIP` alone changes `clusterIPs` (validation then refuses the change).
        if string_list(&new["spec"]["clusterIPs"]) == old_ips {
            new["spec"]["clusterIPs"] = json!([ip(new)]);
        }
    }
}

fn port_node_ports(svc: &Value) -> impl Iterator<Item = Value> + '_ {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort"))
        .filter(|n| !n.is_null())
        .cloned()
}

/// NodePort and LoadBalancer Services, and ClusterIP ones with external IPs, take traffic from outside
/// the cluster: only they have an `externalTrafficPolicy`.
fn externally_accessible(svc: &Value) -> bool {
    matches!(
        svc["spec"]["type"].as_str(),
        Some("NodePort" | "LoadBalancer")
    ) || (svc["spec"]["type"]
        .as_str()
        .is_none_or(|t| t == "ClusterIP")
        && svc["spec"]["externalIPs"]
            .as_array()
            .is_some_and(|a| !a.is_empty()))
}

#[cfg(test)]
mod tests;
