//! Workload tests with real processes, sockets and network namespaces (root). Each namespace is named
//! after the test process id and removed by a Drop guard; traffic stays on loopback.

mod agnhost;
mod probe;
mod process;

use std::path::PathBuf;
use std::process::Command;

/// A network namespace made for one test, removed on drop.
pub(crate) struct Netns {
    name: String,
}

impl Netns {
    pub(crate) fn new(tag: &str) -> Netns {
        let name = format!("t{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        let ok = Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "lo up in {name}");
        Netns { name }
    }

    pub(crate) fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
