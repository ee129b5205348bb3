//! Throw-away network namespaces and commands run inside them. Every namespace this bench
//! creates is owned by a [`Netns`] guard and deleted when it drops, on success, error or panic
//! alike (the main function also removes leftovers of its own process id on start).

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub(crate) struct Netns {
    pub(crate) name: String,
}

impl Netns {
    /// Creates `name` with loopback up.
    pub(crate) fn new(name: String) -> Result<Netns> {
        sh(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        sh(&["ip", "-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs `args` inside the namespace, feeding `stdin`; fails with its stderr.
    pub(crate) fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<(String, Duration)> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend(args);
        run(&full, stdin)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Runs a command, failing with its stderr.
pub(crate) fn sh(args: &[&str]) -> Result<()> {
    run(args, None).map(drop)
}

/// Runs a command with optional stdin; returns stdout and the wall time from spawn to exit.
pub(crate) fn run(args: &[&str], stdin: Option<&str>) -> Result<(String, Duration)> {
    let start = Instant::now();
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {args:?}"))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped");
        pipe.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
                .chars()
                .take(2000)
                .collect::<String>()
        );
    }
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), took))
}

/// Deletes namespaces a previous run of this process id left (a killed run cannot drop).
pub(crate) fn remove_leftovers(prefix: &str) {
    if let Ok((list, _)) = run(&["ip", "netns", "list"], None) {
        for line in list.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name.starts_with(prefix) {
                let _ = Command::new("ip").args(["netns", "del", name]).output();
            }
        }
    }
}
