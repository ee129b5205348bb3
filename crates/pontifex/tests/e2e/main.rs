//! Black-box tests: the real `pontifex` binary driven by outside tools (kubectl, kube-rs).

mod up;
