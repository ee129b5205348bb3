//! Black-box tests of the `pontifex` binary: each test runs the real binary on a throw-away data
//! directory (`test_support::TestServer`) and drives it only through its HTTPS API, with kube-rs
//! (`client`, `crash`). One test binary, so it links once.

mod client;
mod crash;
