//! The redb backend. To be written.
