//! Workloads inside pods: processes, the built-in test server, probes and pod status.
