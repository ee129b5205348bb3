//! What a container runs, decided from its spec alone (no image is pulled or inspected).
//!
//! - an `agnhost` image runs the built-in server with the container's arguments (`netexec …`,
//!   `serve-hostname`, `pause`), the way the real image's `/agnhost` entrypoint would;
//! - a `pause` image runs the built-in `pause`;
//! - any other image with a `command` (or only `args`, as for an image without an entrypoint) runs that
//!   program of this machine;
//! - any other image without a command runs the built-in `netexec` on the container's ports: HTTP on every
//!   TCP port, the UDP command server on every UDP port; without ports it only waits (`pause`). This is what
//!   makes `nginx:1.19` answer on port 80 with its pod name.

use std::ffi::OsString;
use std::path::Path;

use k8s_openapi::api::core::v1::Container;

/// The hidden subcommand of the pontifex binary that runs [`super::agnhost::run`].
pub const AGNHOST_SUBCOMMAND: &str = "agnhost";

/// What a container runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A program of this machine, `argv[0]` looked up in `PATH` like a container runtime would.
    Exec {
        /// The program and its arguments.
        argv: Vec<String>,
    },
    /// The built-in agnhost stand-in, with agnhost's own arguments (`netexec --http-port=80 …`).
    Builtin {
        /// The arguments after `agnhost`.
        args: Vec<String>,
    },
}

impl Program {
    /// The command line to start: the program itself, or `<pontifex_bin> agnhost <args…>` for the built-in
    /// server (so it runs in the pod's namespace like any other program).
    pub fn argv(&self, pontifex_bin: &Path) -> Vec<OsString> {
        match self {
            Program::Exec { argv } => argv.iter().map(OsString::from).collect(),
            Program::Builtin { args } => {
                let mut v = vec![
                    pontifex_bin.as_os_str().to_owned(),
                    OsString::from(AGNHOST_SUBCOMMAND),
                ];
                v.extend(args.iter().map(OsString::from));
                v
            }
        }
    }
}

/// The last path segment of an image reference without tag or digest:
/// `registry.k8s.io/e2e-test-images/agnhost:2.53` → `agnhost`.
pub(crate) fn image_basename(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

/// Decides what `container` runs.
pub fn plan(container: &Container) -> Program {
    let image = container.image.as_deref().unwrap_or("");
    let command = container.command.clone().unwrap_or_default();
    let args = container.args.clone().unwrap_or_default();
    match image_basename(image) {
        "agnhost" => {
            // The image's entrypoint is `/agnhost`; a command naming it is the same thing.
            let mut all = command;
            all.extend(args);
            if all.first().is_some_and(|c| image_basename(c) == "agnhost") {
                all.remove(0);
                return Program::Builtin { args: all };
            }
            if container.command.as_ref().is_some_and(|c| !c.is_empty()) {
                return Program::Exec { argv: all };
            }
            if all.is_empty() {
                // agnhost without a subcommand prints its help and exits; a pod would crash-loop.
                // Serving netexec's defaults is the useful reading.
                return Program::Builtin {
                    args: vec!["netexec".into()],
                };
            }
            Program::Builtin { args: all }
        }
        "pause" if command.is_empty() => Program::Builtin {
            args: vec!["pause".into()],
        },
        _ if !command.is_empty() => {
            let mut argv = command;
            argv.extend(args);
            Program::Exec { argv }
        }
        _ if !args.is_empty() => Program::Exec { argv: args },
        _ => default_server(container),
    }
}

/// The built-in server on the container's own ports.
fn default_server(container: &Container) -> Program {
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    for p in container.ports.iter().flatten() {
        match p.protocol.as_deref().unwrap_or("TCP") {
            "UDP" => udp.push(p.container_port),
            "TCP" => tcp.push(p.container_port),
            _ => {} // SCTP: not served by the built-in server.
        }
    }
    tcp.dedup();
    udp.dedup();
    if tcp.is_empty() && udp.is_empty() {
        return Program::Builtin {
            args: vec!["pause".into()],
        };
    }
    let mut args = vec!["netexec".to_string()];
    if tcp.is_empty() {
        args.push("--http-port=-1".into());
    }
    args.extend(tcp.iter().map(|p| format!("--http-port={p}")));
    if udp.is_empty() {
        args.push("--udp-port=-1".into());
    }
    args.extend(udp.iter().map(|p| format!("--udp-port={p}")));
    Program::Builtin { args }
}

#[cfg(test)]
mod tests;
