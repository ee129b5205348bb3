//! Pod networking: namespaces, sandboxes, the lab, host-gw and VXLAN routes.

mod support;

mod lab;
mod netns;
mod routes;
mod sandbox;
