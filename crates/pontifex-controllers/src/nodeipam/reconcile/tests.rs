use super::*;
use serde_json::json;

fn node(name: &str, cidr: Option<&str>) -> Node {
    let mut n = json!({"metadata": {"name": name}, "spec": {}});
    if let Some(c) = cidr {
        n["spec"] = json!({"podCIDR": c, "podCIDRs": [c]});
    }
    serde_json::from_value(n).unwrap()
}

fn cluster() -> DualStackCidrs {
    "10.244.0.0/16".parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn run(nodes: &[Node]) -> Vec<Action> {
    reconcile(&cluster(), &[24], nodes, &BTreeMap::new(), &BTreeSet::new())
}

#[test]
fn nodes_get_distinct_lowest_free_subnets() {
    let got = run(&[node("b", None), node("a", None)]);
    assert_eq!(
        got,
        [
            Action::Assign {
                node: "a".into(),
                cidrs: vec![net("10.244.0.0/24")]
            },
            Action::Assign {
                node: "b".into(),
                cidrs: vec![net("10.244.1.0/24")]
            },
        ]
    );
}

#[test]
fn existing_cidrs_are_kept_and_skipped_which_makes_restarts_stable() {
    let nodes = [
        node("a", Some("10.244.0.0/24")),
        node("b", Some("10.244.2.0/24")),
        node("c", None),
    ];
    assert_eq!(
        run(&nodes),
        [Action::Assign {
            node: "c".into(),
            cidrs: vec![net("10.244.1.0/24")]
        }]
    );
    // Everything assigned: a resync (or a restarted controller) does nothing.
    let all = [
        node("a", Some("10.244.0.0/24")),
        node("b", Some("10.244.1.0/24")),
    ];
    assert_eq!(run(&all), []);
}

#[test]
fn a_deleted_nodes_cidr_is_reused() {
    // a had 10.244.0.0/24 and was deleted: the next node gets it.
    let nodes = [node("b", Some("10.244.1.0/24")), node("c", None)];
    assert_eq!(
        run(&nodes),
        [Action::Assign {
            node: "c".into(),
            cidrs: vec![net("10.244.0.0/24")]
        }]
    );
}

#[test]
fn pending_assignments_are_not_handed_out_twice() {
    let pending = BTreeMap::from([("b".to_owned(), vec![net("10.244.0.0/24")])]);
    let got = reconcile(
        &cluster(),
        &[24],
        &[node("a", None), node("b", None)],
        &pending,
        &BTreeSet::new(),
    );
    assert_eq!(
        got,
        [Action::Assign {
            node: "a".into(),
            cidrs: vec![net("10.244.1.0/24")]
        }]
    );
}

#[test]
fn a_full_range_is_reported_once() {
    let small: DualStackCidrs = "10.244.0.0/23".parse().unwrap();
    let nodes = [
        node("a", Some("10.244.0.0/24")),
        node("b", Some("10.244.1.0/24")),
        node("c", None),
    ];
    let got = reconcile(&small, &[24], &nodes, &BTreeMap::new(), &BTreeSet::new());
    assert_eq!(got, [Action::Full { node: "c".into() }]);
    let told = BTreeSet::from(["c".to_owned()]);
    assert_eq!(
        reconcile(&small, &[24], &nodes, &BTreeMap::new(), &told),
        []
    );
}

#[test]
fn overlapping_foreign_cidrs_count_as_used() {
    // A node with a bigger CIDR covering two /24s blocks both.
    let nodes = [node("a", Some("10.244.0.0/23")), node("b", None)];
    assert_eq!(
        run(&nodes),
        [Action::Assign {
            node: "b".into(),
            cidrs: vec![net("10.244.2.0/24")]
        }]
    );
}

fn dual_node(name: &str, cidrs: &[&str]) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name},
        "spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs}}))
    .unwrap()
}

#[test]
fn dual_stack_nodes_get_one_cidr_per_family_primary_first() {
    for (ranges, masks, held, want) in [
        (
            "10.244.0.0/16,fd00:10:244::/56",
            [24, 64],
            ["10.244.0.0/24", "fd00:10:244::/64"],
            ["10.244.1.0/24", "fd00:10:244:1::/64"],
        ),
        (
            "fd00:10:244::/56,10.244.0.0/16",
            [64, 24],
            ["fd00:10:244::/64", "10.244.0.0/24"],
            ["fd00:10:244:1::/64", "10.244.1.0/24"],
        ),
    ] {
        let cidrs: DualStackCidrs = ranges.parse().unwrap();
        let nodes = [dual_node("a", &held), node("b", None)];
        let got = reconcile(&cidrs, &masks, &nodes, &BTreeMap::new(), &BTreeSet::new());
        assert_eq!(
            got,
            [Action::Assign {
                node: "b".into(),
                cidrs: vec![net(want[0]), net(want[1])]
            }],
            "{ranges}"
        );
    }
}

#[test]
fn single_stack_ipv6_clusters_hand_out_ipv6_cidrs() {
    let cidrs: DualStackCidrs = "fd00:10:244::/60".parse().unwrap();
    let got = reconcile(
        &cidrs,
        &[64],
        &[node("a", None), node("b", None)],
        &BTreeMap::new(),
        &BTreeSet::new(),
    );
    assert_eq!(
        got,
        [
            Action::Assign {
                node: "a".into(),
                cidrs: vec![net("fd00:10:244::/64")]
            },
            Action::Assign {
                node: "b".into(),
                cidrs: vec![net("fd00:10:244:1::/64")]
            },
        ]
    );
}

#[test]
fn a_node_with_a_single_cidr_keeps_it_when_the_cluster_becomes_dual_stack() {
    let cidrs: DualStackCidrs = "10.244.0.0/16,fd00:10:244::/56".parse().unwrap();
    let nodes = [node("old", Some("10.244.0.0/24")), node("new", None)];
    let got = reconcile(
        &cidrs,
        &[24, 64],
        &nodes,
        &BTreeMap::new(),
        &BTreeSet::new(),
    );
    // "old" is left alone; "new" gets the next IPv4 subnet and the first IPv6 one.
    assert_eq!(
        got,
        [Action::Assign {
            node: "new".into(),
            cidrs: vec![net("10.244.1.0/24"), net("fd00:10:244::/64")]
        }]
    );
}

#[test]
fn a_full_secondary_range_is_reported_and_assigns_nothing() {
    let cidrs: DualStackCidrs = "10.244.0.0/16,fd00::/64".parse().unwrap();
    let nodes = [
        dual_node("a", &["10.244.0.0/24", "fd00::/64"]),
        node("b", None),
    ];
    let got = reconcile(
        &cidrs,
        &[24, 64],
        &nodes,
        &BTreeMap::new(),
        &BTreeSet::new(),
    );
    assert_eq!(got, [Action::Full { node: "b".into() }]);
}
