//! Black-box tests of the `pontifex` binary: each test runs the real binary on a throw-away data
//! directory and drives it only from outside — the real kubectl, kube-rs, signals — asserting on what
//! those tools show. One test binary, so it links once.

mod client;
mod crash;
mod deployments;
mod dualstack;
mod endpoints;
mod fake;
mod kubectl;
mod lab;
mod lifecycle;
mod nodes;
mod pods;
mod protobuf;
mod proxy;
mod rootless;
mod runtime;
mod seed;
mod up;
mod userspace;
