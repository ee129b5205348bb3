use super::*;
use serde_json::json;

fn node(name: &str, cidr: Option<&str>) -> Node {
    let mut n = json!({"metadata": {"name": name}, "spec": {}});
    if let Some(c) = cidr {
        n["spec"] = json!({"podCIDR": c, "podCIDRs": [c]});
    }
    serde_json::from_value(n).unwrap()
}

fn cluster() -> Ipv4Net {
    "10.244.0.0/16".parse().unwrap()
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn run(nodes: &[Node]) -> Vec<Action> {
    reconcile(cluster(), 24, nodes, &BTreeMap::new(), &BTreeSet::new())
}

#[test]
fn nodes_get_distinct_lowest_free_subnets() {
    let got = run(&[node("b", None), node("a", None)]);
    assert_eq!(
        got,
        [
            Action::Assign {
                node: "a".into(),
                cidr: net("10.244.0.0/24")
            },
            Action::Assign {
                node: "b".into(),
                cidr: net("10.244.1.0/24")
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
            cidr: net("10.244.1.0/24")
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
            cidr: net("10.244.0.0/24")
        }]
    );
}

#[test]
fn pending_assignments_are_not_handed_out_twice() {
    let pending = BTreeMap::from([("b".to_owned(), net("10.244.0.0/24"))]);
    let got = reconcile(
        cluster(),
        24,
        &[node("a", None), node("b", None)],
        &pending,
        &BTreeSet::new(),
    );
    assert_eq!(
        got,
        [Action::Assign {
            node: "a".into(),
            cidr: net("10.244.1.0/24")
        }]
    );
}

#[test]
fn a_full_range_is_reported_once() {
    let small = net("10.244.0.0/23");
    let nodes = [
        node("a", Some("10.244.0.0/24")),
        node("b", Some("10.244.1.0/24")),
        node("c", None),
    ];
    let got = reconcile(small, 24, &nodes, &BTreeMap::new(), &BTreeSet::new());
    assert_eq!(got, [Action::Full { node: "c".into() }]);
    let told = BTreeSet::from(["c".to_owned()]);
    assert_eq!(reconcile(small, 24, &nodes, &BTreeMap::new(), &told), []);
}

#[test]
fn overlapping_foreign_cidrs_count_as_used() {
    // A node with a bigger CIDR covering two /24s blocks both.
    let nodes = [node("a", Some("10.244.0.0/23")), node("b", None)];
    assert_eq!(
        run(&nodes),
        [Action::Assign {
            node: "b".into(),
            cidr: net("10.244.2.0/24")
        }]
    );
}
