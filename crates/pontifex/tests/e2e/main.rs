//! Black-box end-to-end tests of the `pontifex` binary: one integration-test binary (it links once),
//! one module per outside tool. The tests start the real binary on throw-away data directories and
//! drive it only through the tools a person would use, asserting on the text those tools print.

mod kubectl;
