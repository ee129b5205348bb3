//! Pod and node networking through netlink.
