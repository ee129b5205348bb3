//! Workload tests with real processes, sockets and network namespaces (root). Each namespace is named
//! after the test process id and removed by a Drop guard; traffic stays on loopback.

mod agnhost;
mod probe;
mod process;

use std::ffi::OsString;
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

/// The container shim, when this test binary is re-executed as one (see [`shim_argv`]).
#[test]
fn container_shim_entry() {
    if std::env::var_os("PONTIFEX_TEST_SHIM").is_some() {
        std::process::exit(pontifex_node::workload::shim::main());
    }
}

/// How tests run the container shim: this test binary, running only [`container_shim_entry`] (the
/// `pontifex` binary is not built for this crate's tests). `env` execs, so the pid is the shim's.
pub(crate) fn shim_argv() -> Vec<OsString> {
    vec![
        "env".into(),
        "PONTIFEX_TEST_SHIM=1".into(),
        std::env::current_exe().unwrap().into(),
        "container_shim_entry".into(),
        "--exact".into(),
        "--nocapture".into(),
        "--test-threads=1".into(),
    ]
}
