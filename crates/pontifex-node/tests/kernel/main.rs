//! Real-kernel tests of pontifex-node (root required): every test works in network namespaces it creates,
//! named with a unique prefix, and removes them on drop, also when it fails. Traffic only flows between
//! those namespaces.

mod net;
