use std::collections::HashSet;
use std::net::IpAddr;

use super::*;

fn cidr(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn range_skips_network_gateway_and_broadcast() {
    let all: Vec<_> = candidates(cidr("10.244.1.0/24"), None).unwrap().collect();
    assert_eq!(all.len(), 253);
    assert_eq!(all[0], ip("10.244.1.2"));
    assert_eq!(*all.last().unwrap(), ip("10.244.1.254"));
    assert!(!all.contains(&ip("10.244.1.0")));
    assert!(!all.contains(&ip("10.244.1.1")));
    assert!(!all.contains(&ip("10.244.1.255")));
    assert_eq!(gateway(cidr("10.244.1.0/24")), ip("10.244.1.1"));
}

#[test]
fn smallest_and_too_small_ranges() {
    let all: Vec<_> = candidates(cidr("10.0.0.4/30"), None).unwrap().collect();
    assert_eq!(all, vec![ip("10.0.0.6")]);
    assert!(matches!(
        candidates(cidr("10.0.0.4/31"), None),
        Err(IpamError::RangeTooSmall(_))
    ));
}

#[test]
fn round_robin_starts_after_last_and_wraps() {
    let c = cidr("10.0.0.0/29"); // usable .2 ..= .6
    let order: Vec<_> = candidates(c, Some(ip("10.0.0.4"))).unwrap().collect();
    assert_eq!(
        order,
        vec![
            ip("10.0.0.5"),
            ip("10.0.0.6"),
            ip("10.0.0.2"),
            ip("10.0.0.3"),
            ip("10.0.0.4")
        ]
    );
    // Last at the end of the range wraps to the start.
    assert_eq!(
        candidates(c, Some(ip("10.0.0.6"))).unwrap().next(),
        Some(ip("10.0.0.2"))
    );
    // A last address outside the range (the podCIDR changed) starts from the beginning.
    assert_eq!(
        candidates(c, Some(ip("192.168.0.9"))).unwrap().next(),
        Some(ip("10.0.0.2"))
    );
}

#[test]
fn pick_skips_taken_and_reports_exhaustion() {
    let c = cidr("10.0.0.0/29");
    let taken: HashSet<_> = [ip("10.0.0.5"), ip("10.0.0.6")].into();
    assert_eq!(
        pick(c, Some(ip("10.0.0.4")), &taken).unwrap(),
        ip("10.0.0.2")
    );
    let full: HashSet<_> = candidates(c, None).unwrap().collect();
    assert!(matches!(pick(c, None, &full), Err(IpamError::Exhausted(_))));
}

#[test]
fn orphans_are_allocations_without_live_owner() {
    let allocs = vec![
        Allocation {
            ip: ip("10.0.0.2"),
            owner: "a".into(),
        },
        Allocation {
            ip: ip("10.0.0.3"),
            owner: "b".into(),
        },
        Allocation {
            ip: ip("10.0.0.4"),
            owner: String::new(),
        },
    ];
    let live: HashSet<String> = ["a".to_owned()].into();
    let dead: Vec<_> = orphans(&allocs, &live).into_iter().map(|a| a.ip).collect();
    assert_eq!(dead, vec![ip("10.0.0.3"), ip("10.0.0.4")]);
}

#[test]
fn store_allocates_round_robin_and_does_not_reuse_freed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(dir.path(), cidr("10.244.1.0/24")).unwrap();
    let a = ipam.allocate("pod-a").unwrap();
    let b = ipam.allocate("pod-b").unwrap();
    assert_eq!((a, b), (ip("10.244.1.2"), ip("10.244.1.3")));
    // Idempotent per owner.
    assert_eq!(ipam.allocate("pod-a").unwrap(), a);
    assert_eq!(ipam.release("pod-a").unwrap(), vec![a]);
    assert!(ipam.release("pod-a").unwrap().is_empty());
    // The freed .2 is not handed out next: round robin continues after .3.
    assert_eq!(ipam.allocate("pod-c").unwrap(), ip("10.244.1.4"));
    let owners: Vec<_> = ipam
        .list()
        .unwrap()
        .into_iter()
        .map(|a| (a.ip, a.owner))
        .collect();
    assert_eq!(
        owners,
        vec![
            (ip("10.244.1.3"), "pod-b".to_owned()),
            (ip("10.244.1.4"), "pod-c".to_owned())
        ]
    );
    // The file format is host-local's: the name is the IP, the content the owner.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("10.244.1.3")).unwrap(),
        "pod-b"
    );
}

#[test]
fn new_allocator_over_same_dir_never_reuses_held_ip() {
    let dir = tempfile::tempdir().unwrap();
    let c = cidr("10.0.0.0/29");
    let held = {
        let first = Ipam::open(dir.path(), c).unwrap();
        [first.allocate("a").unwrap(), first.allocate("b").unwrap()]
    };
    // "Crash": the last-reserved hint is lost; held addresses must still be skipped.
    std::fs::remove_file(dir.path().join("last_reserved_ip.0")).unwrap();
    let second = Ipam::open(dir.path(), c).unwrap();
    let mut fresh = Vec::new();
    while let Ok(x) = second.allocate(&format!("n{}", fresh.len())) {
        fresh.push(x);
    }
    assert_eq!(fresh.len(), 3);
    for h in held {
        assert!(!fresh.contains(&h), "{h} handed out twice");
    }
    assert!(matches!(
        second.allocate("one-too-many"),
        Err(IpamError::Exhausted(_))
    ));
}

#[test]
fn gc_frees_dead_owners_only() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(dir.path(), cidr("10.0.0.0/28")).unwrap();
    let a = ipam.allocate("live").unwrap();
    let b = ipam.allocate("dead").unwrap();
    let live: HashSet<String> = ["live".to_owned()].into();
    let freed = ipam.gc(&live).unwrap();
    assert_eq!(
        freed,
        vec![Allocation {
            ip: b,
            owner: "dead".into()
        }]
    );
    assert_eq!(
        ipam.list().unwrap(),
        vec![Allocation {
            ip: a,
            owner: "live".into()
        }]
    );
}

#[test]
fn concurrent_allocators_never_share_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let c = cidr("10.0.0.0/26"); // 61 usable
    let got: Vec<IpAddr> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let path = dir.path().to_owned();
                s.spawn(move || {
                    let ipam = Ipam::open(path, c).unwrap();
                    (0..15)
                        .map(|i| ipam.allocate(&format!("t{t}-{i}")).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let unique: HashSet<_> = got.iter().collect();
    assert_eq!(unique.len(), got.len());
    assert_eq!(got.len(), 60);
}

#[test]
fn invalid_owner_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(dir.path(), cidr("10.0.0.0/24")).unwrap();
    assert!(matches!(ipam.allocate(""), Err(IpamError::InvalidOwner(_))));
    assert!(matches!(
        ipam.allocate("a\nb"),
        Err(IpamError::InvalidOwner(_))
    ));
}

#[test]
fn ipv6_range_skips_network_and_gateway_but_not_all_ones() {
    let c = cidr("fd00:10:244:1::/126"); // ::0 network, ::1 gateway, ::2 and ::3 usable
    let all: Vec<_> = candidates(c, None).unwrap().collect();
    assert_eq!(all, vec![ip("fd00:10:244:1::2"), ip("fd00:10:244:1::3")]);
    assert_eq!(gateway(c), ip("fd00:10:244:1::1"));
    assert!(matches!(
        candidates(cidr("fd00::/127"), None),
        Err(IpamError::RangeTooSmall(_))
    ));
    // A /64 is 2^64 addresses: candidates are lazy and wrap at the top.
    let big = cidr("fd00:10:244:2::/64");
    let mut it = candidates(big, Some(ip("fd00:10:244:2:ffff:ffff:ffff:ffff"))).unwrap();
    assert_eq!(it.next(), Some(ip("fd00:10:244:2::2")));
    // A last address of the other family does not steer the search.
    let mut it = candidates(big, Some(ip("0.0.0.9"))).unwrap();
    assert_eq!(it.next(), Some(ip("fd00:10:244:2::2")));
}

#[test]
fn dual_stack_allocators_share_a_directory_and_keep_ipv4_state_as_before() {
    let dir = tempfile::tempdir().unwrap();
    // IPv4 state written before the node became dual-stack.
    std::fs::write(dir.path().join("10.244.1.2"), "old-pod").unwrap();
    std::fs::write(dir.path().join("last_reserved_ip.0"), "10.244.1.2").unwrap();
    let v4 = Ipam::open(dir.path(), cidr("10.244.1.0/24")).unwrap();
    let v6 = Ipam::open(dir.path(), cidr("fd00:10:244:1::/64")).unwrap();
    assert_eq!(v4.allocate("old-pod").unwrap(), ip("10.244.1.2"));
    assert_eq!(v4.allocate("new-pod").unwrap(), ip("10.244.1.3"));
    assert_eq!(v6.allocate("new-pod").unwrap(), ip("fd00:10:244:1::2"));
    assert_eq!(v6.allocate("old-pod").unwrap(), ip("fd00:10:244:1::3"));
    // Each sees only its family.
    assert_eq!(v4.list().unwrap().len(), 2);
    assert!(v6.list().unwrap().iter().all(|a| a.ip.is_ipv6()));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("last_reserved_ip.0")).unwrap(),
        "10.244.1.3"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("last_reserved_ip.1")).unwrap(),
        "fd00:10:244:1::3"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("fd00:10:244:1::2")).unwrap(),
        "new-pod"
    );
    // Releasing through one family leaves the other's address held.
    assert_eq!(v6.release("old-pod").unwrap(), vec![ip("fd00:10:244:1::3")]);
    assert_eq!(v4.allocate("old-pod").unwrap(), ip("10.244.1.2"));
    let live: HashSet<String> = ["new-pod".to_owned()].into();
    assert_eq!(v6.gc(&live).unwrap(), vec![]);
    assert_eq!(v4.gc(&live).unwrap().len(), 1);
}
