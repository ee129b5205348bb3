use super::*;
use crate::model::IpFamily;

#[test]
fn sysctl_flag() {
    assert!(parse_sysctl_flag("1\n"));
    assert!(parse_sysctl_flag(" 2"));
    assert!(!parse_sysctl_flag("0\n"));
    assert!(!parse_sysctl_flag(""));
    assert!(!parse_sysctl_flag("yes"));
}

fn places(cfg: &ProxierConfig) -> Vec<(KernelCounter, Place)> {
    NetlinkCounters::for_proxier(cfg, Some("n1")).places
}

#[test]
fn iptables_reads_the_nfacct_objects_that_exist() {
    let mut cfg = ProxierConfig::new(ProxyMode::Iptables, "n");
    assert!(places(&cfg).is_empty(), "no objects made, nothing to read");
    cfg.iptables.nfacct_invalid = true;
    cfg.iptables.nfacct_localhost_node_ports = true;
    assert_eq!(
        places(&cfg),
        vec![
            (
                KernelCounter::CtStateInvalidDropped,
                Place::Nfacct("ct_state_invalid_dropped_pkts")
            ),
            (
                KernelCounter::LocalhostNodePortsAccepted,
                Place::Nfacct("localhost_nps_accepted_pkts")
            ),
        ]
    );
    // be_liberal: no INVALID rule, so no INVALID metric.
    cfg.iptables.conntrack_tcp_be_liberal = true;
    assert_eq!(
        places(&cfg).iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        vec![KernelCounter::LocalhostNodePortsAccepted]
    );
}

#[test]
fn nftables_reads_its_table_counter() {
    let mut cfg = ProxierConfig::new(ProxyMode::Nftables, "n");
    cfg.nftables.family = IpFamily::V6;
    assert_eq!(
        places(&cfg),
        vec![(
            KernelCounter::CtStateInvalidDropped,
            Place::Nft {
                family: 10,
                table: "pontifex".into(),
                name: "ct_state_invalid_dropped_pkts"
            }
        )]
    );
    cfg.nftables.invalid_drop = false;
    assert!(NetlinkCounters::for_proxier(&cfg, None).is_empty());
    // Nothing to read: no netlink at all (no namespace "n1" exists here).
    assert_eq!(
        NetlinkCounters::for_proxier(&cfg, Some("n1")).read(),
        vec![]
    );
}

#[test]
fn a_dual_stack_node_reads_a_shared_nfacct_object_once_and_each_table_counter() {
    let mut v4 = ProxierConfig::new(ProxyMode::Iptables, "n");
    v4.iptables.nfacct_invalid = true;
    let mut v6 = v4.clone();
    v6.iptables.family = IpFamily::V6;
    let mut both = NetlinkCounters::for_proxier(&v4, Some("n1"));
    both.merge(NetlinkCounters::for_proxier(&v6, Some("n1")));
    assert_eq!(both.places, places(&v4), "one nfacct object, read once");

    let v4 = ProxierConfig::new(ProxyMode::Nftables, "n");
    let mut v6 = v4.clone();
    v6.nftables.family = IpFamily::V6;
    let mut both = NetlinkCounters::for_proxier(&v4, Some("n1"));
    both.merge(NetlinkCounters::for_proxier(&v6, Some("n1")));
    let families: Vec<u8> = both
        .places
        .iter()
        .filter_map(|(_, p)| match p {
            Place::Nft { family, .. } => Some(*family),
            Place::Nfacct(_) => None,
        })
        .collect();
    assert_eq!(families, vec![2, 10], "the ip and the ip6 table's counters");
}
