//! Endpoint schedulers with IPVS's names and semantics, and ClientIP session affinity. Pure: no sockets,
//! no clock (callers pass `now`), shared by the userspace proxy and the ingress proxy.
