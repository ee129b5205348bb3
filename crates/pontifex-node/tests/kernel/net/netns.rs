use pontifex_node::net::netns;

use super::support::{Cleanup, unique_prefix};

fn own_netns_inode() -> String {
    std::fs::read_link("/proc/thread-self/ns/net")
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn create_is_idempotent_and_run_in_enters_the_namespace() {
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let name = format!("{prefix}-x");
    assert!(!netns::exists(&name).unwrap());
    netns::create(&name).unwrap();
    netns::create(&name).unwrap();
    assert!(netns::exists(&name).unwrap());
    assert_eq!(
        netns::list(&format!("{prefix}-")).unwrap(),
        vec![name.clone()]
    );
    // `ip netns` sees it too.
    let listed = super::support::ip_out(&["netns", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name.as_str())),
        "{listed}"
    );

    let outside = own_netns_inode();
    let inside = netns::run_in(&name, own_netns_inode).unwrap();
    assert_ne!(inside, outside);
    assert_eq!(
        netns::run_in(&name, own_netns_inode).unwrap(),
        inside,
        "same namespace each time"
    );
    assert_eq!(
        own_netns_inode(),
        outside,
        "the caller's thread never moves"
    );
    // The caller can open it (e.g. to setns a child process or move a link).
    drop(netns::open(&name).unwrap());

    netns::delete(&name).unwrap();
    netns::delete(&name).unwrap();
    assert!(!netns::exists(&name).unwrap());
    assert!(matches!(
        netns::run_in(&name, || ()),
        Err(netns::NetnsError::NotFound(_))
    ));
    assert!(matches!(
        netns::create("a/b"),
        Err(netns::NetnsError::InvalidName(_))
    ));
}

#[test]
fn run_in_reports_a_panic() {
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let name = format!("{prefix}-p");
    netns::create(&name).unwrap();
    assert!(matches!(
        netns::run_in(&name, || panic!("boom")),
        Err(netns::NetnsError::Panicked(_))
    ));
}
